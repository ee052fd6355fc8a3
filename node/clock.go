package node

import (
	"os"
	"strings"
	"sync/atomic"
	"time"
)

// FileSkewClock is a clock for fault tests: the host clock plus an offset
// read from a file (a Go duration such as "3h" or "-90m"), re-read every
// second until stop closes. A missing or empty file means no offset. Tests
// move one node's clock this way without touching the host's.
func FileSkewClock(path string, stop <-chan struct{}) func() time.Time {
	var skew atomic.Int64
	read := func() {
		b, err := os.ReadFile(path)
		if err != nil {
			skew.Store(0)
			return
		}
		s := strings.TrimSpace(string(b))
		if s == "" {
			skew.Store(0)
			return
		}
		if d, err := time.ParseDuration(s); err == nil {
			skew.Store(int64(d))
		}
	}
	read()
	go func() {
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				read()
			}
		}
	}()
	return func() time.Time { return time.Now().Add(time.Duration(skew.Load())) }
}
