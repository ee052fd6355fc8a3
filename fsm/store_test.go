package fsm

import (
	"errors"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// A store that defers its syncs is trusted after a process crash (same
// boot: the page cache kept every write) and after a clean close, and set
// aside when it had unsynced writes in an earlier boot.
func TestDeferredSyncStoreAndBoots(t *testing.T) {
	for _, tc := range []struct {
		name      string
		clean     bool
		nextBoot  string
		wantKept  bool
		wantAside bool
	}{
		{"process crash, same boot", false, "boot-1", true, false},
		{"machine crash, new boot", false, "boot-2", false, true},
		{"clean close, new boot", true, "boot-2", true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "state.db")
			boot := "boot-1"
			opts := Options{DeferSync: true, BootID: func() (string, error) { return boot, nil }}
			s, err := OpenWith(path, opts)
			if err != nil {
				t.Fatal(err)
			}
			f := New(s, nil)
			lf := &logFeeder{t: t}
			f.ApplyBatch([]*raft.Log{lf.entry(&DomainPut{Name: "customer.test", Destination: "127.0.0.1:25"}), lf.entry(spool("Q1", "u@customer.test"))})
			if tc.clean {
				if err := s.Close(); err != nil {
					t.Fatal(err)
				}
				if _, err := os.Stat(path + ".boot"); !os.IsNotExist(err) {
					t.Fatalf("boot mark after a clean close: %v", err)
				}
			} else {
				// What a killed process leaves: the file and the mark.
				s.db.Close()
			}
			boot = tc.nextBoot
			s2, err := OpenWith(path, opts)
			if err != nil {
				t.Fatal(err)
			}
			defer s2.Close()
			_, kept, _ := s2.Domain("customer.test")
			if kept != tc.wantKept || (s2.AppliedIndex() == 2) != tc.wantKept {
				t.Fatalf("domain kept %v, applied %d; want kept %v", kept, s2.AppliedIndex(), tc.wantKept)
			}
			if (s2.SetAside() != "") != tc.wantAside {
				t.Fatalf("set aside %q, want %v", s2.SetAside(), tc.wantAside)
			}
			if tc.wantAside {
				if _, err := os.Stat(s2.SetAside()); err != nil {
					t.Fatalf("the set-aside store is not kept for inspection: %v", err)
				}
			}
			if b, err := os.ReadFile(path + ".boot"); err != nil || string(b) != tc.nextBoot+"\n" {
				t.Fatalf("boot mark %q, %v", b, err)
			}
		})
	}
}

// Without a boot ID the store cannot tell a process crash from a machine
// crash, so it syncs every commit rather than guess.
func TestDeferredSyncNeedsBootID(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.db")
	s, err := OpenWith(path, Options{DeferSync: true, BootID: func() (string, error) { return "", errors.New("no /proc") }})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if s.opts.DeferSync || s.db.NoSync {
		t.Fatal("deferring syncs without a boot ID")
	}
	if _, err := os.Stat(path + ".boot"); !os.IsNotExist(err) {
		t.Fatalf("boot mark written without a boot ID: %v", err)
	}
}

// A batch whose commit fails is retried until it commits, not dropped:
// the node reports itself stalled meanwhile and carries on by itself once
// the disk has room. A shutdown ends the retries.
func TestFailedCommitStallsThenResumes(t *testing.T) {
	f := openTestFSM(t)
	s := f.store
	var failures atomic.Int32
	failures.Store(3)
	s.mu.Lock()
	s.commitFault = func() error {
		if failures.Add(-1) >= 0 {
			return errors.New("no space left on device (test)")
		}
		return nil
	}
	s.mu.Unlock()
	lf := &logFeeder{t: t}
	done := make(chan []interface{})
	go func() {
		done <- f.ApplyBatch([]*raft.Log{lf.entry(&DomainPut{Name: "customer.test", Destination: "127.0.0.1:25"})})
	}()
	deadline := time.Now().Add(5 * time.Second)
	for !errors.Is(s.Failed(), ErrStoreStalled) {
		if time.Now().After(deadline) {
			t.Fatalf("not reported as stalled: %v", s.Failed())
		}
		time.Sleep(time.Millisecond)
	}
	select {
	case resp := <-done:
		if resp[0] != nil {
			t.Fatalf("batch answered %v", resp[0])
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the batch never committed")
	}
	if s.Failed() != nil || s.AppliedIndex() != 1 {
		t.Fatalf("after the retries: failed %v, applied %d", s.Failed(), s.AppliedIndex())
	}
	if _, ok, _ := s.Domain("customer.test"); !ok {
		t.Fatal("the retried command was not applied")
	}

	// A disk that stays full: shutdown ends the wait.
	s.mu.Lock()
	s.commitFault = func() error { return errors.New("no space left on device (test)") }
	s.mu.Unlock()
	go func() {
		done <- f.ApplyBatch([]*raft.Log{lf.entry(&DomainPut{Name: "other.test", Destination: "127.0.0.1:25"})})
	}()
	time.Sleep(300 * time.Millisecond)
	s.StopRetrying()
	select {
	case resp := <-done:
		if err, _ := resp[0].(error); !errors.Is(err, ErrStoreFailed) {
			t.Fatalf("after StopRetrying the batch answered %v", resp[0])
		}
	case <-time.After(2 * time.Second):
		t.Fatal("StopRetrying did not end the retries")
	}
	if s.AppliedIndex() != 1 {
		t.Fatalf("applied index moved to %d without a commit", s.AppliedIndex())
	}
}
