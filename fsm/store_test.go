package fsm

import (
	"os"
	"path/filepath"
	"testing"

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
// crash, so it refuses to defer syncs rather than guess.
func TestDeferredSyncNeedsBootID(t *testing.T) {
	_, err := OpenWith(filepath.Join(t.TempDir(), "state.db"), Options{DeferSync: true, BootID: func() (string, error) { return "", nil }})
	if err == nil {
		t.Fatal("opened without a boot ID")
	}
}
