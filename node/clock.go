package node

import (
	"context"
	"os"
	"strings"
	"sync"
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

// clusterClock is this node's view of the cluster's time: its own clock
// plus an offset that clockLoop corrects every few seconds against the
// voters' clocks.
//
// The node's own clock may be stepped at any moment (by an operator, by
// NTP after a suspend, by a fault test). Such a step must not reach the
// cluster's time before the peers have been asked: a leader whose clock
// jumped hours ahead would otherwise, in the seconds until the next
// measurement, find every message hours old, expire the spool and bounce
// it, and send delay notices early. So this clock advances only as fast
// as the monotonic clock between measurements: a step is absorbed into
// the offset at once. Measurements are taken against this clock itself
// (cluster.ClockOffsetFrom), not against the node's own, so a step in the
// middle of one cannot skew it either.
type clusterClock struct {
	raw func() time.Time

	mu       sync.Mutex
	offset   time.Duration
	ok       bool          // a measurement has been taken
	steps    time.Duration // the sum of the steps absorbed so far
	lastWall time.Time     // raw reading of the previous call, without its monotonic part
	lastMono time.Time     // time.Now() of the previous call, monotonic
	ready    chan struct{} // closed by the first measurement
}

// clockMaxStep is the largest difference between the node's clock and the
// monotonic clock over one interval that passes as the clocks' drift.
const clockMaxStep = time.Second

func newClusterClock(raw func() time.Time) *clusterClock {
	return &clusterClock{raw: raw, ready: make(chan struct{})}
}

func (c *clusterClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.observe()
	return c.lastWall.Add(c.offset)
}

// observe reads the raw clock and absorbs a step since the previous
// reading. The caller holds mu.
func (c *clusterClock) observe() {
	// Round(0) drops the monotonic reading, so that Sub compares the
	// wall clock, which is what a step moves.
	wall, mono := c.raw().Round(0), time.Now()
	if !c.lastMono.IsZero() {
		if step := wall.Sub(c.lastWall) - mono.Sub(c.lastMono); step > clockMaxStep || step < -clockMaxStep {
			c.offset -= step
			c.steps += step
		}
	}
	c.lastWall, c.lastMono = wall, mono
}

// adjust applies a measurement: delta is how far the cluster's time is
// from this clock (cluster.ClockOffsetFrom with now as the reference).
func (c *clusterClock) adjust(delta time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.observe()
	c.offset += delta
	if !c.ok {
		c.ok = true
		close(c.ready)
	}
}

// offsetNow is how far this clock is from the node's own.
func (c *clusterClock) offsetNow() time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.observe()
	return c.offset
}

// stepped returns the sum of the steps absorbed so far.
func (c *clusterClock) stepped() time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.observe()
	return c.steps
}

func (c *clusterClock) measured() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.ok
}

// waitMeasured waits for the first measurement; false means ctx ended
// first.
func (c *clusterClock) waitMeasured(ctx context.Context) bool {
	select {
	case <-c.ready:
		return true
	case <-ctx.Done():
		return false
	}
}
