package node

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestDiskGauge(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	free, calls := int64(100<<20), 0
	g := &diskGauge{dir: "/data", min: 64 << 20, now: func() time.Time { return now },
		statfs: func(string) (int64, error) { calls++; return free, nil }}
	if err := g.room(0); err != nil {
		t.Fatalf("100 MiB free, 64 MiB minimum: %v", err)
	}
	if err := g.room(40 << 20); err == nil || !strings.Contains(err.Error(), "disk nearly full") {
		t.Fatalf("a 40 MiB message would leave 60 MiB: %v", err)
	}
	// Measured at most once a second.
	free = 10 << 20
	if err := g.room(0); err != nil || calls != 1 {
		t.Fatalf("re-measured within the second (calls %d): %v", calls, err)
	}
	now = now.Add(time.Second)
	if err := g.room(0); err == nil || calls != 2 {
		t.Fatalf("10 MiB free passed (calls %d)", calls)
	}
	// A host clock stepped back does not freeze the measurement.
	now = now.Add(-time.Hour)
	free = 1 << 30
	if err := g.room(0); err != nil || calls != 3 {
		t.Fatalf("after the clock stepped back (calls %d): %v", calls, err)
	}
	g.statfs = func(string) (int64, error) { return 0, errors.New("EIO") }
	now = now.Add(2 * time.Second)
	if err := g.room(0); err == nil {
		t.Fatal("an unknown free space passed")
	}
}
