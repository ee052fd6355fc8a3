package node

import (
	"fmt"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// diskGauge watches the free space of the data directory. A node that
// takes a message it has no room to keep would have to answer 451 after
// the client sent the whole body; refusing at MAIL with 452 (RFC 5321
// §4.2.3, RFC 3463 §3.4 "4.3.1 mail system full") saves the client the
// upload and tells it to try another MX, the way Postfix's queue_minfree
// does.
type diskGauge struct {
	dir string
	min int64
	now func() time.Time
	// statfs returns the bytes an unprivileged writer may still use.
	statfs func(dir string) (int64, error)

	mu   sync.Mutex
	at   time.Time
	free int64
	err  error
}

func statfsFree(dir string) (int64, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return 0, err
	}
	return int64(st.Bavail) * int64(st.Bsize), nil
}

// read returns the free space, measured at most once a second: sessions
// ask at every MAIL.
func (g *diskGauge) read() (int64, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	now := g.now()
	if g.at.IsZero() || now.Sub(g.at) >= time.Second || now.Before(g.at) {
		g.free, g.err = g.statfs(g.dir)
		g.at = now
	}
	return g.free, g.err
}

// room reports whether a message of size bytes (0: not declared) can be
// taken without going under the minimum.
func (g *diskGauge) room(size int64) error {
	free, err := g.read()
	if err != nil {
		return fmt.Errorf("free space of %s unknown: %w", g.dir, err)
	}
	if free-size < g.min {
		return fmt.Errorf("disk nearly full: %d MiB free in %s, below the minimum of %d MiB", free>>20, g.dir, g.min>>20)
	}
	return nil
}
