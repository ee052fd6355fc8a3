package inbox

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"lifeline/fsm"
	"lifeline/webui/session"
)

// storeBackend applies commands straight to a local store: the HTTP side
// of the inbox without Raft, for measuring the server's own cost.
type storeBackend struct {
	mu  sync.Mutex
	f   *fsm.FSM
	idx uint64
	now time.Time
}

func (b *storeBackend) Store() *fsm.Store { return b.f.Store() }
func (b *storeBackend) Now() time.Time    { return b.now }
func (b *storeBackend) Apply(ctx context.Context, cmd any) error {
	data, err := fsm.Encode(cmd)
	if err != nil {
		return err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.idx = b.f.AppliedIndex() + 1
	if r := b.f.ApplyBatch([]*raft.Log{{Index: b.idx, Type: raft.LogCommand, Data: data}})[0]; r != nil {
		return r.(error)
	}
	return nil
}
func (b *storeBackend) ApplyVisible(ctx context.Context, cmd any) error { return b.Apply(ctx, cmd) }
func (b *storeBackend) OpenBody(ctx context.Context, hash string) (io.ReadCloser, error) {
	return io.NopCloser(strings.NewReader("Subject: x\r\n\r\nbody\r\n")), nil
}
func (b *storeBackend) PutBlob(ctx context.Context, r io.Reader) (string, int64, error) {
	return "", 0, errors.New("not in benchmarks")
}
func (b *storeBackend) SendMail(ctx context.Context, from string, rcpts []string, body []byte) (string, error) {
	return "", errors.New("not in benchmarks")
}
func (b *storeBackend) MailHostname() string { return "bench.test" }

// populateInbox spools n messages for addr straight into the state, in
// batches as Raft would apply them. The messages arrive one millisecond
// apart from start (unix nanoseconds) and reference blobs that do not
// exist.
func populateInbox(f *fsm.FSM, addr string, n int, start int64) error {
	const batch = 1000
	idx := f.AppliedIndex()
	domain := addr[strings.IndexByte(addr, '@')+1:]
	for i := 0; i < n; i += batch {
		var logs []*raft.Log
		for j := i; j < n && j < i+batch; j++ {
			at := start + int64(j)*1e6
			c := &fsm.SpoolAddSummary{
				Add: fsm.SpoolAdd{ID: fmt.Sprintf("BENCH%012d", j), From: "sender@example.net", BlobHash: fmt.Sprintf("bench-%d", j),
					Size: 4096, ReceivedAt: at, Recipients: []fsm.Recipient{{Address: addr, Domain: domain}}},
				Summary: fsm.InboxSummary{From: fmt.Sprintf("Sender %d <sender%d@example.net>", j%97, j%97), Subject: fmt.Sprintf("Message number %d", j), Attachment: j%10 == 0},
			}
			data, err := fsm.Encode(c)
			if err != nil {
				return err
			}
			idx++
			logs = append(logs, &raft.Log{Index: idx, Term: 1, Type: raft.LogCommand, Data: data})
		}
		for _, r := range f.ApplyBatch(logs) {
			if r != nil {
				return r.(error)
			}
		}
	}
	return nil
}

// bigInbox serves an Emergency Inbox whose user has n spooled messages and
// returns a signed-in client and the inbox URL.
func bigInbox(tb testing.TB, n int) (*http.Client, string) {
	tb.Helper()
	s, err := fsm.Open(filepath.Join(tb.TempDir(), "state.db"))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { s.Close() })
	b := &storeBackend{f: fsm.New(s, nil), now: time.Unix(1_800_000_000, 0)}
	const user = "busy@acme.test"
	if err := populateInbox(b.f, user, n, b.now.Add(-time.Hour).UnixNano()); err != nil {
		tb.Fatal(err)
	}
	hash, err := session.HashPassword("correct horse battery", nil)
	if err != nil {
		tb.Fatal(err)
	}
	ctx := context.Background()
	for _, c := range []any{
		&fsm.OrgPut{Name: "Acme", Create: true, At: 1},
		&fsm.DomainPut{Name: "acme.test", Destination: "127.0.0.1:1", Org: "Acme", At: 1},
		&fsm.UserAdd{Email: user, Role: fsm.RoleUser, Org: "Acme", PasswordHash: hash, At: 1},
	} {
		if err := b.Apply(ctx, c); err != nil {
			tb.Fatal(err)
		}
	}
	mux := http.NewServeMux()
	sessions := session.New(b, session.Config{}, nil)
	sessions.Register(mux)
	New(b, sessions, Config{}, nil).Register(mux)
	srv := httptest.NewServer(mux)
	tb.Cleanup(srv.Close)
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar}
	resp, err := c.Get(srv.URL + "/login")
	if err != nil {
		tb.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	tok := regexp.MustCompile(`name="csrf" value="([^"]+)"`).FindSubmatch(page)
	req, _ := http.NewRequest("POST", srv.URL+"/login", strings.NewReader(url.Values{"email": {user}, "password": {"correct horse battery"}, "csrf": {string(tok[1])}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", srv.URL)
	resp, err = c.Do(req)
	if err != nil {
		tb.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		tb.Fatalf("login: %d", resp.StatusCode)
	}
	return c, srv.URL + "/mail/" + user + "/"
}

func firstPage(tb testing.TB, c *http.Client, u string) {
	resp, err := c.Get(u)
	if err != nil {
		tb.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !bytes.Contains(body, []byte("50000 messages waiting")) || bytes.Count(body, []byte(`href="/mail/busy@acme.test/m/`)) != 50 {
		tb.Fatalf("first page: %d", resp.StatusCode)
	}
}

// BenchmarkInboxFirstPageHTTP is the first inbox page of a user with
// 50,000 spooled messages, through HTTP on loopback: session lookup, index
// read, rendering. `make bench` runs it.
func BenchmarkInboxFirstPageHTTP(b *testing.B) {
	c, u := bigInbox(b, 50_000)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		firstPage(b, c, u)
	}
}

// TestInboxFirstPageIsFast holds the target: under 100 ms at the server
// for the first page of 50,000 messages (the median of 20 requests, so a
// busy CI machine's hiccup does not fail it).
func TestInboxFirstPageIsFast(t *testing.T) {
	if testing.Short() || raceEnabled {
		t.Skip("populates 50,000 messages and measures time: not under -short or -race")
	}
	c, u := bigInbox(t, 50_000)
	var ds []time.Duration
	for i := 0; i < 20; i++ {
		start := time.Now()
		firstPage(t, c, u)
		ds = append(ds, time.Since(start))
	}
	sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
	t.Logf("first inbox page of 50,000 messages: median %v, max %v", ds[len(ds)/2], ds[len(ds)-1])
	if os.Getenv("LIFELINE_BENCH_REPORT") != "" {
		os.WriteFile(os.Getenv("LIFELINE_BENCH_REPORT"), []byte(ds[len(ds)/2].String()+"\n"), 0o644)
	}
	if ds[len(ds)/2] > 100*time.Millisecond {
		t.Fatalf("first page median %v, want under 100ms", ds[len(ds)/2])
	}
}
