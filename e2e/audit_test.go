package e2e

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"lifeline/e2e/kit"
)

// The audit log is a hash chain: `lifeline admin audit verify` finds it
// intact; after someone edits an entry in the node's state file, it names
// the entry and fails.
func TestAuditVerifyFindsTampering(t *testing.T) {
	p := newProc(t)
	p.Start()
	p.MustCLI("admin", "org", "add", "Acme")
	p.MustCLI("admin", "domain", "add", "acme.test", "--destination", "127.0.0.1:1", "--org", "Acme")
	p.MustCLI("admin", "domain", "set", "acme.test", "--destination", "127.0.0.1:2")
	if out := p.MustCLI("admin", "audit", "verify"); !strings.Contains(out, "audit chain intact") || !strings.Contains(out, "3 entries") {
		t.Fatalf("verify of an untouched log: %s", out)
	}
	if out := p.MustCLI("admin", "audit", "--org", "Acme"); !strings.Contains(out, "domain_add") || !strings.Contains(out, "domain_set") {
		t.Fatalf("admin changes not in the audit log:\n%s", out)
	}
	p.Kill()

	// Someone with the file rewrites where the domain first pointed.
	db, err := bolt.Open(filepath.Join(p.DataDir, "state.db"), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	edited := false
	err = db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket([]byte("audit"))
		c := b.Cursor()
		for k, v := c.First(); k != nil; k, v = c.Next() {
			if bytes.Contains(v, []byte("domain_add")) && bytes.Contains(v, []byte("127.0.0.1:1")) {
				nv := bytes.Replace(v, []byte("127.0.0.1:1"), []byte("127.0.0.1:9"), 1)
				edited = true
				return b.Put(append([]byte(nil), k...), nv)
			}
		}
		return nil
	})
	db.Close()
	if err != nil || !edited {
		t.Fatalf("tampering: edited %v, %v", edited, err)
	}

	p.Start()
	out, err := p.CLI("admin", "audit", "verify")
	if err == nil || !strings.Contains(out, "BROKEN") || !strings.Contains(out, "entry 2") || !strings.Contains(out, "changed") {
		t.Fatalf("verify after tampering: %v\n%s", err, out)
	}
}

// The console's verbs of `lifeline admin`, as scripts use them.
func TestConsoleCLI(t *testing.T) {
	live := kit.FreePort(t)
	sink := kit.StartSink(t, live)
	dead := kit.FreePort(t)
	p := newProc(t)
	p.Start()
	p.MustCLI("admin", "org", "add", "Acme")
	out := p.MustCLI("admin", "domain", "add", "acme.test", "--destination", dead, "--destination", live, "--org", "Acme")
	if !strings.Contains(out, dead+", "+live) {
		t.Fatalf("domain add with two destinations: %s", out)
	}
	out, err := p.CLI("admin", "domain", "test", "acme.test")
	if err == nil || !strings.Contains(out, "FAIL  "+dead) || !strings.Contains(out, "connection refused") || !strings.Contains(out, "OK    "+live) {
		t.Fatalf("domain test: %v\n%s", err, out)
	}
	if out := p.MustCLI("admin", "domain", "test", "acme.test", "--destination", live); !strings.Contains(out, "greeting: 220") {
		t.Fatalf("domain test of one destination: %s", out)
	}
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.csv")
	os.WriteFile(bad, []byte("ann@acme.test,Ann\nbroken,Bob\n"), 0o600)
	out, err = p.CLI("admin", "user", "import", bad, "--org", "Acme")
	if err == nil || !strings.Contains(out, "line 2: broken not a valid email address") {
		t.Fatalf("bad import: %v\n%s", err, out)
	}
	if out := p.MustCLI("admin", "user", "list", "--org", "Acme"); strings.Contains(out, "ann@acme.test") {
		t.Fatal("a bad file was half imported")
	}
	good := filepath.Join(dir, "good.csv")
	os.WriteFile(good, []byte("ann@acme.test,Ann\nbob@acme.test,Bob,admin,ops\n"), 0o600)
	if out := p.MustCLI("admin", "user", "import", good, "--org", "Acme", "--welcome"); !strings.Contains(out, "imported 2 users; 2 welcome emails queued") {
		t.Fatalf("import: %s", out)
	}
	if out := p.MustCLI("admin", "user", "welcome", "ann@acme.test", "--reset"); !strings.Contains(out, "1 emails queued") {
		t.Fatalf("reset link: %s", out)
	}
	kit.Wait(t, 30*time.Second, 50*time.Millisecond, "the three emails at the customer's server", func() (bool, error) { return len(sink.Messages()) == 3, nil })
	p.MustCLI("admin", "alerts", "set", "Acme", "--enable", "--via", "email", "--to", "tech", "--tech-email", "tech@contacts.test")
	if out := p.MustCLI("admin", "alerts", "show", "Acme"); !strings.Contains(out, "alerts on, to tech, by email") {
		t.Fatalf("alerts: %s", out)
	}
	if _, err := p.CLI("admin", "alerts", "set", "Acme", "--via", "sms"); err == nil {
		t.Fatal("SMS alerts without a mobile number were accepted")
	}
	p.MustCLI("admin", "user", "delete", "bob@acme.test")
	if out := p.MustCLI("admin", "audit", "verify"); !strings.Contains(out, "intact") {
		t.Fatalf("verify: %s", out)
	}
}
