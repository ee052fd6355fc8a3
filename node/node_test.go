package node

import (
	"context"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"lifeline/e2e/kit"
	"lifeline/fsm"
)

func startTestNode(t *testing.T) *Node {
	t.Helper()
	return startTestNodeWith(t, nil)
}

// startTestNodeWith starts a single-node cluster, with tune's changes to
// its configuration, and waits until it is healthy.
func startTestNodeWith(t *testing.T, tune func(*Config)) *Node {
	t.Helper()
	cfg := Config{
		ID: "t1", DataDir: t.TempDir(), SMTPAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0", RaftAddr: "127.0.0.1:0",
		AdminToken: "secret-token",
	}
	if tune != nil {
		tune(&cfg)
	}
	n, err := Start(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	kit.Wait(t, 20*time.Second, 20*time.Millisecond, "the node to become healthy", func() (bool, error) { return n.Healthy() == nil, nil })
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := n.Apply(ctx, &fsm.DomainPut{Name: "customer.test", Destination: "127.0.0.1:1", At: 1}); err != nil {
		t.Fatal(err)
	}
	return n
}

// smtpTransaction sends one message and returns the first reply that is
// not a success.
func smtpTransaction(t *testing.T, addr string) string {
	t.Helper()
	r, err := kit.Send(addr, "a@example.net", []string{"u@customer.test"}, "Subject: x\r\n\r\nbody\r\n")
	if err != nil {
		t.Fatal(err)
	}
	return r.String()
}

func TestClosedStoreAnswers451AndUnhealthy(t *testing.T) {
	n := startTestNode(t)
	if line := smtpTransaction(t, n.SMTPAddr()); !strings.HasPrefix(line, "250 2.0.0") {
		t.Fatalf("healthy node: %q", line)
	}
	n.store.Close()
	if line := smtpTransaction(t, n.SMTPAddr()); !strings.HasPrefix(line, "451 4.3.0") {
		t.Fatalf("closed store: got %q, want 451 4.3.0", line)
	}
	resp, err := http.Get("http://" + n.HTTPAddr() + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("healthz with a closed store: %d", resp.StatusCode)
	}
}

func TestQueueIDsSortByArrival(t *testing.T) {
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	a, b := newQueueID(t0), newQueueID(t0.Add(time.Millisecond))
	if len(a) != 18 || a >= b {
		t.Fatalf("IDs %s, %s: want 18 characters in arrival order", a, b)
	}
	if strings.ContainsAny(a+b, "ILOU") {
		t.Fatalf("ID uses an ambiguous letter: %s %s", a, b)
	}
}

// Bodies that no spooled message references are removed after the grace
// period: retired mail, and bodies whose SpoolAdd never committed.
func TestBlobCollection(t *testing.T) {
	n := startTestNode(t)
	ctx := context.Background()
	write := func(body string) string {
		w, err := n.blobs.Create()
		if err != nil {
			t.Fatal(err)
		}
		w.Write([]byte(body))
		h, _, err := w.Commit()
		if err != nil {
			t.Fatal(err)
		}
		return h
	}
	kept := write("referenced body")
	// Held, so the delivery engine leaves it alone while the test looks.
	if err := n.Apply(ctx, &fsm.SpoolAdd{ID: "Q1", From: "a@example.net", BlobHash: kept, Size: 15, ReceivedAt: time.Now().UnixNano(),
		Recipients: []fsm.Recipient{{Address: "u@customer.test", Domain: "customer.test"}}}); err != nil {
		t.Fatal(err)
	}
	if err := n.Apply(ctx, &fsm.QueueOp{Op: fsm.OpHold, IDs: []string{"Q1"}, At: 1}); err != nil {
		t.Fatal(err)
	}
	orphan := write("never committed")
	// An hour on, the orphan is past its grace period.
	removed, err := n.collectBlobs(time.Now().Add(time.Hour))
	if err != nil || removed != 1 {
		t.Fatalf("removed %d, err %v; want the one old orphan", removed, err)
	}
	fresh := write("just arrived")
	if removed, err := n.collectBlobs(time.Now()); err != nil || removed != 0 {
		t.Fatalf("removed %d young or referenced bodies, err %v", removed, err)
	}
	if n.blobs.Has(orphan) || !n.blobs.Has(kept) || !n.blobs.Has(fresh) {
		t.Fatalf("kept: referenced %v, fresh %v; orphan gone %v", n.blobs.Has(kept), n.blobs.Has(fresh), !n.blobs.Has(orphan))
	}
	// Once the message retires, its body goes too.
	if err := n.Apply(ctx, &fsm.QueueOp{Op: fsm.OpDelete, IDs: []string{"Q1"}, At: 2}); err != nil {
		t.Fatal(err)
	}
	if removed, _ := n.collectBlobs(time.Now().Add(time.Hour)); removed != 2 || n.blobs.Has(kept) || n.blobs.Has(fresh) {
		t.Fatalf("retired message's body not collected (removed %d)", removed)
	}
}

func TestFileSkewClock(t *testing.T) {
	path := t.TempDir() + "/skew"
	stop := make(chan struct{})
	defer close(stop)
	os.WriteFile(path, []byte("3h\n"), 0o600)
	now := FileSkewClock(path, stop)
	if d := now().Sub(time.Now()); d < 3*time.Hour-time.Minute || d > 3*time.Hour+time.Minute {
		t.Fatalf("offset %v, want 3h", d)
	}
	os.WriteFile(path, []byte(""), 0o600)
	kit.Wait(t, 5*time.Second, 50*time.Millisecond, "the cleared offset to be picked up", func() (bool, error) {
		return now().Sub(time.Now()) <= time.Minute, nil
	})
}
