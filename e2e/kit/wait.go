package kit

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"
)

// Poll calls cond every interval until it reports done, returns an error,
// or ctx ends. An error from cond ends the wait at once and is returned as
// it is. When ctx ends first, the error says what was awaited and why the
// wait ended; what is called only then, so it can report what the last
// call of cond saw.
func Poll(ctx context.Context, interval time.Duration, what func() string, cond func() (bool, error)) error {
	if done, err := cond(); done || err != nil {
		return err
	}
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s (gave up: %w)", what(), context.Cause(ctx))
		case <-tick.C:
		}
		done, err := cond()
		if err != nil {
			return err
		}
		if done {
			return nil
		}
	}
}

// cleanupMargin is the time kept back before a test's deadline, so that a
// wait that runs out fails the test with its cleanup (processes killed,
// logs shown) rather than by go test's -timeout panic, which runs none.
const cleanupMargin = 20 * time.Second

// Wait is Poll for tests: it polls cond every interval and fails t when
// timeout passes first ("timed out after 10s waiting for what") or when
// cond returns an error. It never waits beyond the test's own deadline
// less a margin for the cleanup.
func Wait(t testing.TB, timeout, interval time.Duration, what string, cond func() (bool, error)) {
	t.Helper()
	if err := WaitErr(t, timeout, interval, func() string { return what }, cond); err != nil {
		t.Fatal(err)
	}
}

// WaitErr is Wait that returns the failure instead, for a caller that
// wants to say more about it; what is called only when the wait times out.
func WaitErr(t testing.TB, timeout, interval time.Duration, what func() string, cond func() (bool, error)) error {
	t.Helper()
	end := time.Now().Add(timeout)
	if dt, ok := t.(interface{ Deadline() (time.Time, bool) }); ok {
		if d, ok := dt.Deadline(); ok && d.Add(-cleanupMargin).Before(end) {
			end = d.Add(-cleanupMargin)
		}
	}
	return Until(end, timeout, interval, what, cond)
}

// Until polls cond until it holds or the time end, which a caller may
// have cut short of timeout; the error of a wait that ran out names
// timeout.
func Until(end time.Time, timeout, interval time.Duration, what func() string, cond func() (bool, error)) error {
	ctx, cancel := context.WithDeadline(context.Background(), end)
	defer cancel()
	start := time.Now()
	err := Poll(ctx, interval, what, cond)
	if err != nil && ctx.Err() != nil && errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("timed out after %v waiting for %s", min(timeout, time.Since(start)).Round(time.Millisecond), what())
	}
	return err
}
