package kit

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"
)

func TestPoll(t *testing.T) {
	n := 0
	if err := Poll(context.Background(), time.Millisecond, func() string { return "three calls" }, func() (bool, error) {
		n++
		return n == 3, nil
	}); err != nil || n != 3 {
		t.Fatalf("%d calls, %v", n, err)
	}
	boom := errors.New("boom")
	if err := Poll(context.Background(), time.Millisecond, func() string { return "" }, func() (bool, error) { return false, boom }); err != boom {
		t.Fatalf("an error of cond: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	last := ""
	err := Poll(ctx, time.Millisecond, func() string { return "never, last " + last }, func() (bool, error) { last = "seen"; return false, nil })
	if err == nil || !strings.Contains(err.Error(), "never, last seen") || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("timeout: %v", err)
	}
}

func TestWaitErr(t *testing.T) {
	err := WaitErr(t, 30*time.Millisecond, time.Millisecond, func() string { return "the impossible" }, func() (bool, error) { return false, nil })
	if err == nil || !strings.HasPrefix(err.Error(), "timed out after 30ms waiting for the impossible") {
		t.Fatalf("timeout: %v", err)
	}
	if err := WaitErr(t, time.Second, time.Millisecond, func() string { return "" }, func() (bool, error) { return true, nil }); err != nil {
		t.Fatal(err)
	}
}
