package e2e

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"lifeline/e2e/kit"
)

// Disaster recovery: a backup taken from a running three-node cluster
// with spooled mail (through a follower, which holds no leader duty),
// the cluster lost, the backup restored into a fresh single node: the
// spool, the domains and every body are there, and the mail delivers
// byte for byte once the customer's server is back.
func TestBackupSaveRestoreIntoFreshNode(t *testing.T) {
	procs := startCluster(t, 3)
	leader := kit.Leader(procs)
	if leader == nil {
		t.Fatal("no leader")
	}
	var follower *kit.Proc
	for _, p := range procs {
		if p != leader {
			follower = p
			break
		}
	}
	dead := kit.FreePort(t) // the customer's server is down
	leader.MustCLI("admin", "domain", "add", "customer.test", "--destination", dead)
	leader.MustCLI("admin", "domain", "add", "other.test", "--destination", dead)

	bodies := map[string]string{} // subject -> body
	var ids []string
	for i := range 6 {
		subject := fmt.Sprintf("backup %d", i)
		body := "From: s@example.net\r\nTo: u@customer.test\r\nSubject: " + subject + "\r\n\r\n" +
			strings.Repeat(fmt.Sprintf("line %d of message %d\r\n", i, i), 20+i*2000)
		bodies[subject] = body
		p := procs[i%3]
		sent, err := kit.Send(p.SMTP, "s@example.net", []string{"u@customer.test"}, body)
		reply := sent.String()
		if err != nil || !strings.HasPrefix(reply, "250 ") {
			t.Fatalf("send %d: %q %v", i, reply, err)
		}
		ids = append(ids, queueID(t, reply))
	}
	kit.Wait(t, 20*time.Second, 50*time.Millisecond, "six spooled messages on the follower", func() (bool, error) {
		out, err := follower.CLI("admin", "queue", "list")
		return err == nil && strings.Contains(out, "\n6 messages"), nil
	})

	file := filepath.Join(t.TempDir(), "cluster-backup.tar.gz")
	out := follower.MustCLI("admin", "snapshot", "save", file)
	if !strings.Contains(out, "6 messages, 2 domains, 6 bodies") {
		t.Fatalf("snapshot save: %s", out)
	}
	if info, err := os.Stat(file); err != nil || info.Mode().Perm() != 0o600 {
		t.Fatalf("backup file: %v %v", info, err)
	}
	if _, err := os.Stat(file + ".partial"); !os.IsNotExist(err) {
		t.Fatalf("partial file left behind: %v", err)
	}

	// The cluster is lost.
	for _, p := range procs {
		p.Kill()
	}

	fresh := newProc(t)
	fresh.ID = "dr1"
	fresh.Start()
	// A file that is not a backup changes nothing.
	junk := filepath.Join(t.TempDir(), "junk.tar")
	os.WriteFile(junk, []byte("not a tar file at all"), 0o600)
	if _, err := fresh.CLI("admin", "snapshot", "restore", junk); err == nil || !strings.Contains(err.Error(), "400") {
		t.Fatalf("restoring junk: %v", err)
	}
	out = fresh.MustCLI("admin", "snapshot", "restore", file)
	if !strings.Contains(out, "6 messages, 2 domains, 6 bodies") || strings.Contains(out, "WARNING") {
		t.Fatalf("snapshot restore: %s", out)
	}
	// The restored state carries the old cluster's operator token.
	if _, err := fresh.CLI("admin", "queue", "list"); err == nil {
		t.Fatal("the fresh node's own token still works after the restore")
	}
	fresh.Token = procs[0].Token
	fresh.WaitHealthy()

	var list []struct {
		ID string `json:"id"`
	}
	if err := json.Unmarshal([]byte(fresh.MustCLI("admin", "queue", "list", "--json")), &list); err != nil {
		t.Fatal(err)
	}
	got := map[string]bool{}
	for _, m := range list {
		got[m.ID] = true
	}
	for _, id := range ids {
		if !got[id] {
			t.Errorf("message %s missing after restore", id)
		}
	}
	// Every body is in the fresh node's blob store, intact.
	for _, id := range ids {
		var m struct {
			Blob string `json:"blob"`
		}
		if err := json.Unmarshal([]byte(fresh.MustCLI("admin", "queue", "show", id, "--json")), &m); err != nil {
			t.Fatal(err)
		}
		b, err := storedBody(fresh, m.Blob)
		sum := sha256.Sum256(b)
		if err != nil || hex.EncodeToString(sum[:]) != m.Blob {
			t.Errorf("body %s of %s not restored intact: %v", m.Blob, id, err)
		}
	}
	if out := fresh.MustCLI("admin", "domain", "list"); !strings.Contains(out, "customer.test") || !strings.Contains(out, "other.test") {
		t.Fatalf("domains after restore:\n%s", out)
	}
	// A second restore over a state with mail needs --force.
	if _, err := fresh.CLI("admin", "snapshot", "restore", file); err == nil || !strings.Contains(err.Error(), "409") {
		t.Fatalf("restore over live state without --force: %v", err)
	}

	// The node restarts on the restored state.
	fresh.Signal(os.Interrupt)
	<-fresh.Current().Done()
	fresh.Start()

	// The customer's server is back: everything delivers, byte for byte.
	sinkAddr := kit.FreePort(t)
	sink := kit.StartSink(t, sinkAddr)
	fresh.MustCLI("admin", "domain", "set", "customer.test", "--destination", sinkAddr)
	fresh.MustCLI("admin", "queue", "flush")
	kit.Wait(t, 60*time.Second, 50*time.Millisecond, "the restored spool to drain", func() (bool, error) {
		out, err := fresh.CLI("admin", "queue", "list")
		return err == nil && strings.Contains(out, "\n0 messages"), nil
	})
	delivered := sink.Messages()
	if len(delivered) != len(bodies) {
		t.Fatalf("smtp-sink got %d messages, want %d", len(delivered), len(bodies))
	}
	for _, m := range delivered {
		want, ok := bodies[subjectOf(m)]
		if !ok || !strings.HasSuffix(string(m), strings.ReplaceAll(want, "\r\n", "\n")) {
			t.Errorf("delivered message %q differs from the one sent", subjectOf(m))
		}
	}
}
