// Package e2e runs real lifeline processes on loopback and talks to them
// the way operators and sending servers do, through e2e/kit.
package e2e

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"lifeline/cluster/blob"
	"lifeline/e2e/kit"
)

// binary is the lifeline binary every test runs, built once for the run.
var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "lifeline-e2e-bin-")
	if err != nil {
		panic(err)
	}
	if binary, err = kit.Build(context.Background(), dir); err != nil {
		fmt.Fprintln(os.Stderr, "building lifeline:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// newProc is a single node of the binary under test, not started yet.
func newProc(t *testing.T, args ...string) *kit.Proc {
	t.Helper()
	return kit.NewProc(t, binary, args...)
}

// startCluster starts n nodes of the binary under test as one cluster.
func startCluster(t *testing.T, n int, args ...string) []*kit.Proc {
	t.Helper()
	return kit.StartCluster(t, binary, n, nil, args...)
}

// storedBody reads the body named hash from the node's own store on disk,
// without asking the node (which would fetch a missing body from a peer).
func storedBody(p *kit.Proc, hash string) ([]byte, error) {
	st, err := blob.Inspect(filepath.Join(p.DataDir, "blobs"))
	if err != nil {
		return nil, err
	}
	r, err := st.Open(hash)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	return io.ReadAll(r)
}

// storedBodies reports how many of hashes the node's store holds.
func storedBodies(p *kit.Proc, hashes []string) (have int, err error) {
	st, err := blob.Inspect(filepath.Join(p.DataDir, "blobs"))
	if err != nil {
		return 0, err
	}
	for _, h := range hashes {
		if st.Has(h) {
			have++
		}
	}
	return have, nil
}

func queueID(t *testing.T, reply string) string {
	t.Helper()
	i := strings.Index(reply, "queued as ")
	if !strings.HasPrefix(reply, "250 2.0.0") || i < 0 {
		t.Fatalf("not a queued reply: %q", reply)
	}
	return strings.Fields(reply[i+len("queued as "):])[0]
}

func subjectOf(m []byte) string {
	for _, line := range strings.Split(string(m), "\n") {
		if s, ok := strings.CutPrefix(line, "Subject: "); ok {
			return strings.TrimSpace(s)
		}
		if line == "" {
			break
		}
	}
	return ""
}
