package node

import (
	"context"
	"sync/atomic"
	"testing"
	"time"
)

func nearNow(t *testing.T, what string, got time.Time) {
	t.Helper()
	if d := time.Until(got); d > 500*time.Millisecond || d < -500*time.Millisecond {
		t.Fatalf("%s: clock reads %v, %v from the real time", what, got, d)
	}
}

// measure stands in for cluster.ClockOffsetFrom(ctx, c.now) with peers
// whose clocks are right: the offset from c to the real time, read over a
// measurement during which during() runs.
func measure(c *clusterClock, during func()) time.Duration {
	t0 := c.now()
	during()
	peer := time.Now()
	t1 := c.now()
	return peer.Round(0).Sub(t0.Round(0).Add(t1.Sub(t0) / 2))
}

// Found by the fault campaign (e2e/chaos_test.go): a leader whose clock
// jumped hours ahead acted on it until the next measurement of the
// cluster's time, up to ten seconds later, and in those seconds expired
// and bounced every spooled message (queue lifetime 1h). A step of the
// node's own clock must not reach the cluster's time until a measurement
// confirms it.
func TestClusterClockAbsorbsAStepUntilMeasured(t *testing.T) {
	var skew atomic.Int64
	c := newClusterClock(func() time.Time { return time.Now().Add(time.Duration(skew.Load())) })
	nearNow(t, "before any measurement", c.now())
	c.adjust(measure(c, func() {}))
	nearNow(t, "measured", c.now())

	skew.Store(int64(3 * time.Hour))
	nearNow(t, "right after the node's clock jumped ahead", c.now())
	time.Sleep(20 * time.Millisecond)
	nearNow(t, "a little later", c.now())
	if c.stepped() < 3*time.Hour-time.Second {
		t.Fatalf("step not counted: %v", c.stepped())
	}
	c.adjust(measure(c, func() {}))
	nearNow(t, "measured again", c.now())
	if off := c.offsetNow(); off > -3*time.Hour+time.Second || off < -3*time.Hour-time.Second {
		t.Fatalf("offset %v, want -3h", off)
	}

	skew.Store(0)
	nearNow(t, "after the node's clock went back", c.now())

	before := c.now()
	time.Sleep(30 * time.Millisecond)
	if d := c.now().Sub(before); d < 30*time.Millisecond || d > time.Second {
		t.Fatalf("30ms later the clock moved %v", d)
	}
}

// Found by the fault campaign (seed 36453340): the node's clock, five
// hours ahead, was put right while a measurement was under way (one peer
// was paused, so the measurement took its two-second timeout). The
// measurement, read against the node's own clock and corrected for the
// steps seen since it began, applied the step a second time: the leader
// ran five hours ahead and bounced 450 messages. Measured against the
// corrected clock, a step in the middle changes nothing.
func TestClusterClockStepDuringAMeasurement(t *testing.T) {
	var skew atomic.Int64
	c := newClusterClock(func() time.Time { return time.Now().Add(time.Duration(skew.Load())) })
	c.adjust(measure(c, func() {}))
	skew.Store(int64(5 * time.Hour))
	nearNow(t, "after the jump", c.now())
	c.adjust(measure(c, func() { skew.Store(0); c.now() }))
	nearNow(t, "after a measurement with the clock put right in its middle", c.now())
	c.adjust(measure(c, func() { skew.Store(int64(2 * time.Hour)); c.now() }))
	nearNow(t, "after a measurement with a jump in its middle", c.now())
}

// Found by the fault campaign (seed 36453326): a node killed while its
// clock was four hours ahead restarted, was elected at once and expired
// the spool in the two seconds before its first measurement of the
// cluster's time. Leadership duties wait for it.
func TestClusterClockWaitMeasured(t *testing.T) {
	c := newClusterClock(time.Now)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if c.waitMeasured(ctx) {
		t.Fatal("measured before any measurement")
	}
	done := make(chan bool, 1)
	go func() { done <- c.waitMeasured(context.Background()) }()
	c.adjust(0)
	select {
	case ok := <-done:
		if !ok {
			t.Fatal("waitMeasured reported no measurement")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("waitMeasured did not return after the measurement")
	}
	c.adjust(0) // a second measurement must not close twice
}

// Before its first measurement a node has nothing but its own clock.
func TestClusterClockStartsFromTheNodesClock(t *testing.T) {
	c := newClusterClock(func() time.Time { return time.Now().Add(2 * time.Hour) })
	if d := time.Until(c.now()); d < 2*time.Hour-time.Second || d > 2*time.Hour+time.Second {
		t.Fatalf("offset from the host clock %v, want 2h", d)
	}
	c.adjust(measure(c, func() {}))
	nearNow(t, "after the first measurement", c.now())
}
