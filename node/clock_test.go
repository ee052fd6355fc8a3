package node

import (
	"context"
	"sync/atomic"
	"testing"
	"time"
)

// Found by the fault campaign (e2e/chaos_test.go): a leader whose clock
// jumped three hours ahead acted on it until the next measurement of the
// cluster's time, up to ten seconds later, and in those seconds expired
// and bounced every spooled message (queue lifetime 1h). A step of the
// node's own clock must not reach the cluster's time until a measurement
// confirms it.
func TestClusterClockAbsorbsAStepUntilMeasured(t *testing.T) {
	var skew atomic.Int64
	c := newClusterClock(func() time.Time { return time.Now().Add(time.Duration(skew.Load())) })
	near := func(what string, got, want time.Time) {
		t.Helper()
		if d := got.Sub(want); d > 500*time.Millisecond || d < -500*time.Millisecond {
			t.Fatalf("%s: clock reads %v, want about %v", what, got, want)
		}
	}
	near("before any measurement", c.now(), time.Now())
	c.set(0, c.mark())
	near("measured", c.now(), time.Now())

	skew.Store(int64(3 * time.Hour))
	near("right after the node's clock jumped ahead", c.now(), time.Now())
	time.Sleep(20 * time.Millisecond)
	near("a little later", c.now(), time.Now())

	// The peers confirm the cluster's time: the offset cancels the skew.
	c.set(-3*time.Hour, c.mark())
	near("measured again", c.now(), time.Now())

	// The clock is put right again: still no jump.
	skew.Store(0)
	near("after the node's clock went back", c.now(), time.Now())
	c.set(0, c.mark())
	near("measured once more", c.now(), time.Now())

	// A measurement begun before a step and taken after it: the step is
	// still absorbed.
	mark := c.mark()
	skew.Store(int64(5 * time.Hour))
	c.now()
	c.set(0, mark)
	near("a step during a measurement", c.now(), time.Now())
	if c.stepped() == 0 {
		t.Fatal("no step counted")
	}
	skew.Store(0)
	c.set(0, c.mark())

	// Time still passes.
	before := c.now()
	time.Sleep(30 * time.Millisecond)
	if d := c.now().Sub(before); d < 30*time.Millisecond || d > time.Second {
		t.Fatalf("30ms later the clock moved %v", d)
	}
}

// A node that has never measured the cluster's time and jumps is not
// held back: there is nothing yet to hold it to.
func TestClusterClockStartsFromTheNodesClock(t *testing.T) {
	skewed := func() time.Time { return time.Now().Add(2 * time.Hour) }
	c := newClusterClock(skewed)
	if d := c.now().Sub(time.Now()); d < 2*time.Hour-time.Second || d > 2*time.Hour+time.Second {
		t.Fatalf("offset from the host clock %v, want 2h", d)
	}
}

// Found by the fault campaign (e2e/chaos_test.go, seed 36453326): a node
// killed while its clock was four hours ahead restarted, was elected at
// once and expired the spool in the two seconds before its first
// measurement of the cluster's time. Leadership duties wait for it.
func TestClusterClockWaitMeasured(t *testing.T) {
	c := newClusterClock(time.Now)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if c.waitMeasured(ctx) {
		t.Fatal("measured before any measurement")
	}
	done := make(chan bool, 1)
	go func() { done <- c.waitMeasured(context.Background()) }()
	c.set(0, c.mark())
	select {
	case ok := <-done:
		if !ok {
			t.Fatal("waitMeasured reported no measurement")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("waitMeasured did not return after the measurement")
	}
	c.set(time.Second, c.mark()) // a second measurement must not close twice
}
