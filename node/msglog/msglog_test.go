package msglog

import (
	"fmt"
	"path/filepath"
	"testing"
	"time"
)

func openLog(t *testing.T, cfg Config) *Log {
	t.Helper()
	cfg.Path = filepath.Join(t.TempDir(), "log.db")
	if cfg.Node == "" {
		cfg.Node = "n1"
	}
	l, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

// flush waits until everything appended is written.
func flush(t *testing.T, l *Log, want int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for l.Count() < want {
		if time.Now().After(deadline) {
			t.Fatalf("%d entries written, want %d", l.Count(), want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

var t0 = time.Now().UTC().Truncate(time.Second).Add(-time.Hour)

func TestSearchByEveryKey(t *testing.T) {
	l := openLog(t, Config{})
	l.Append(Entry{At: t0.UnixNano(), Kind: KindSMTP, Status: "accepted", QueueID: "Q1", MessageID: "<abc@sender.test>", From: "a@sender.test", To: []string{"u@customer.test"}, Code: 250})
	l.Append(Entry{At: t0.Add(time.Second).UnixNano(), Kind: KindSMTP, Status: "rejected", From: "spam@evil.test", To: []string{"x@elsewhere.test"}, Code: 554, Detail: "Relay access denied"})
	l.Append(Entry{At: t0.Add(2 * time.Second).UnixNano(), Kind: KindDelivery, Status: "deferred", QueueID: "Q1", To: []string{"u@customer.test"}, Code: 451})
	l.Append(Entry{At: t0.Add(3 * time.Second).UnixNano(), Kind: KindDelivery, Status: "delivered", QueueID: "Q1", To: []string{"u@customer.test"}, Code: 250})
	flush(t, l, 4)

	cases := []struct {
		q    Query
		want []string // statuses, newest first
	}{
		{Query{ID: "Q1"}, []string{"delivered", "deferred", "accepted"}},
		{Query{ID: "q1"}, []string{"delivered", "deferred", "accepted"}},
		{Query{ID: "abc@sender.test"}, []string{"accepted"}},
		{Query{ID: "<abc@sender.test>"}, []string{"accepted"}},
		{Query{Sender: "A@Sender.test"}, []string{"accepted"}},
		{Query{Recipient: "u@customer.test"}, []string{"delivered", "deferred", "accepted"}},
		{Query{Status: "rejected"}, []string{"rejected"}},
		{Query{Domains: []string{"customer.test"}}, []string{"delivered", "deferred", "accepted"}},
		{Query{Domains: []string{"elsewhere.test", "sender.test"}}, []string{"rejected", "accepted"}},
		{Query{Since: t0.Add(time.Second).UnixNano(), Until: t0.Add(2 * time.Second).UnixNano()}, []string{"deferred", "rejected"}},
		{Query{Recipient: "u@customer.test", Status: "deferred"}, []string{"deferred"}},
		{Query{ID: "Q1", Domains: []string{"other.test"}}, nil},
	}
	for _, tc := range cases {
		got, err := l.Search(tc.q)
		if err != nil {
			t.Fatal(err)
		}
		var st []string
		for _, e := range got {
			st = append(st, e.Status)
		}
		if fmt.Sprint(st) != fmt.Sprint(tc.want) {
			t.Errorf("query %+v: got %v, want %v", tc.q, st, tc.want)
		}
	}
}

func TestPagingAndMerge(t *testing.T) {
	a := openLog(t, Config{Node: "n1"})
	b := openLog(t, Config{Node: "n2"})
	for i := 0; i < 30; i++ {
		l := a
		if i%3 == 0 {
			l = b
		}
		l.Append(Entry{At: t0.Add(time.Duration(i) * time.Second).UnixNano(), Kind: KindSMTP, Status: "accepted", QueueID: fmt.Sprintf("Q%02d", i), From: "s@x.test"})
	}
	flush(t, a, 20)
	flush(t, b, 10)
	var seen []string
	q := Query{Sender: "s@x.test", Limit: 7}
	for page := 0; page < 10; page++ {
		ra, _ := a.Search(q)
		rb, _ := b.Search(q)
		merged := Merge([][]Entry{ra, rb}, q.Limit)
		for _, e := range merged {
			seen = append(seen, e.QueueID)
		}
		if len(merged) < q.Limit {
			break
		}
		q.Before = CursorOf(&merged[len(merged)-1])
	}
	if len(seen) != 30 || seen[0] != "Q29" || seen[29] != "Q00" {
		t.Fatalf("paged across two nodes: %v", seen)
	}
}

func TestRetentionAndBound(t *testing.T) {
	now := t0
	l := openLog(t, Config{Retention: time.Hour, MaxEntries: 50, Now: func() time.Time { return now }})
	for i := 0; i < 40; i++ {
		l.Append(Entry{At: t0.Add(-2 * time.Hour).Add(time.Duration(i)).UnixNano(), Kind: KindSMTP, Status: "old", QueueID: fmt.Sprintf("O%d", i)})
	}
	for i := 0; i < 60; i++ {
		l.Append(Entry{At: t0.Add(time.Duration(i)).UnixNano(), Kind: KindSMTP, Status: "new", QueueID: fmt.Sprintf("N%d", i)})
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		old, _ := l.Search(Query{Status: "old"})
		if len(old) == 0 && l.Count() <= 50 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d old entries left, %d in all", len(old), l.Count())
		}
		l.Append(Entry{At: now.UnixNano(), Kind: KindSMTP, Status: "tick"})
		time.Sleep(10 * time.Millisecond)
	}
	// Index entries go with their entries.
	if got, _ := l.Search(Query{ID: "O1"}); len(got) != 0 {
		t.Fatal("a pruned entry is still found through its index")
	}
}
