package e2e

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"lifeline/e2e/kit"
)

type queuedMessage struct {
	ID         string `json:"id"`
	From       string `json:"from"`
	Size       int64  `json:"size"`
	Blob       string `json:"blob"`
	Ret        string `json:"ret"`
	EnvID      string `json:"envid"`
	Recipients []struct {
		Address string   `json:"address"`
		State   string   `json:"state"`
		Notify  []string `json:"notify"`
		ORCPT   string   `json:"orcpt"`
	} `json:"recipients"`
}

// A 250 is a promise: the message survives kill -9 of the node right after
// the reply, with its envelope and its body byte for byte.
func TestKillAfter250KeepsMessage(t *testing.T) {
	p := newProc(t)
	p.Start()
	p.MustCLI("admin", "domain", "add", "customer.test", "--destination", "127.0.0.1:1")

	body := "From: Sender <sender@example.net>\r\nTo: alice@customer.test\r\nSubject: survives\r\n\r\n" +
		strings.Repeat("This line must come back exactly as it was sent.\r\n", 200)
	c := kit.NewClient(t, p.SMTP)
	c.Cmd("EHLO client.example.net", "250")
	c.Cmd("MAIL FROM:<sender@example.net> RET=HDRS ENVID=env42", "250")
	c.Cmd("RCPT TO:<alice@customer.test> NOTIFY=FAILURE,DELAY ORCPT=rfc822;alice@customer.test", "250")
	c.Cmd("RCPT TO:<Bob@CUSTOMER.test>", "250")
	c.Cmd("DATA", "354")
	c.Write(body + ".\r\n")
	id := queueID(t, c.Reply())
	p.Kill()

	p.Start()
	var msgs []queuedMessage
	if err := json.Unmarshal([]byte(p.MustCLI("admin", "queue", "list", "--json")), &msgs); err != nil {
		t.Fatal(err)
	}
	if len(msgs) != 1 || msgs[0].ID != id {
		t.Fatalf("after restart the queue holds %+v, want message %s", msgs, id)
	}
	m := msgs[0]
	if m.From != "sender@example.net" || len(m.Recipients) != 2 || m.Recipients[1].Address != "Bob@customer.test" ||
		m.Ret != "HDRS" || m.EnvID != "env42" || !strings.EqualFold(m.Recipients[0].ORCPT, "rfc822;alice@customer.test") ||
		strings.Join(m.Recipients[0].Notify, ",") != "FAILURE,DELAY" {
		t.Fatalf("envelope changed: %+v", m)
	}
	stored, err := storedBody(p, m.Blob)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(stored)
	if hex.EncodeToString(sum[:]) != m.Blob || int64(len(stored)) != m.Size {
		t.Fatal("stored body does not match its hash or size")
	}
	if !strings.HasPrefix(string(stored), "Received: ") || !strings.HasSuffix(string(stored), body) {
		t.Fatalf("stored body is not the received message with a Received: header:\n%.300s", stored)
	}
	if !strings.Contains(p.MustCLI("admin", "queue", "show", id), "alice@customer.test") {
		t.Fatal("queue show does not list the recipient")
	}
}

// Mail to a domain nobody protects is refused and nothing is queued, on a
// node that has just restarted as much as on a fresh one.
func TestRelayRefusedOverRealProcess(t *testing.T) {
	p := newProc(t)
	p.Start()
	p.MustCLI("admin", "domain", "add", "customer.test", "--destination", "127.0.0.1:1")
	c := kit.NewClient(t, p.SMTP)
	c.Cmd("EHLO client.example.net", "250")
	c.Cmd("MAIL FROM:<spammer@example.net>", "250")
	for _, rcpt := range []string{"victim@elsewhere.test", "victim%elsewhere.test@customer.test", "victim@customer.test.elsewhere.test", "@customer.test:victim@elsewhere.test"} {
		if line := c.Cmd("RCPT TO:<"+rcpt+">", "5"); !strings.HasPrefix(line, "554 5.7.1") {
			t.Errorf("RCPT %s: got %q, want 554 5.7.1", rcpt, line)
		}
	}
	out := p.MustCLI("admin", "queue", "list")
	if !strings.Contains(out, "0 messages") {
		t.Fatalf("queue not empty after refused relay:\n%s", out)
	}
}

// The state store does not sync each commit; after a crash of the whole
// machine it may be torn, so a node that finds its store was left
// unsynced in an earlier boot sets it aside and rebuilds the state from
// the Raft snapshot and log. Here the machine's crash is played by a
// kill -9, a boot mark from another boot, and a store file of garbage:
// every acknowledged message is still there, whether it was in the
// snapshot or only in the log after it.
func TestStateRebuiltAfterMachineCrash(t *testing.T) {
	p := newProc(t)
	p.Start()
	p.MustCLI("admin", "domain", "add", "customer.test", "--destination", "127.0.0.1:1")
	c := kit.NewClient(t, p.SMTP)
	c.Cmd("EHLO client.example.net", "250")
	var ids []string
	send := func(n int) {
		for i := 0; i < n; i++ {
			ids = append(ids, queueID(t, c.Send("a@example.net", []string{"u@customer.test"}, fmt.Sprintf("Subject: m%d\r\n\r\nbody %d\r\n", len(ids), len(ids)))))
		}
	}
	send(5)
	p.MustCLI("admin", "cluster", "snapshot")
	send(5)
	c.Close()
	p.Kill()

	state := filepath.Join(p.DataDir, "state.db")
	if _, err := os.Stat(state + ".boot"); err != nil {
		t.Fatalf("a running node keeps a boot mark beside its store: %v", err)
	}
	if err := os.WriteFile(state+".boot", []byte("a-boot-before-the-power-went\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(state, bytes.Repeat([]byte{0xa5}, 64<<10), 0o600); err != nil {
		t.Fatal(err)
	}
	p.Start()
	var msgs []queuedMessage
	if err := json.Unmarshal([]byte(p.MustCLI("admin", "queue", "list", "--json")), &msgs); err != nil {
		t.Fatal(err)
	}
	have := map[string]bool{}
	for _, m := range msgs {
		have[m.ID] = true
	}
	for _, id := range ids {
		if !have[id] {
			t.Errorf("message %s acknowledged before the crash is gone after the rebuild", id)
		}
	}
	if len(msgs) != len(ids) {
		t.Fatalf("after the rebuild %d messages are queued, want %d", len(msgs), len(ids))
	}
	log, _ := os.ReadFile(filepath.Join(p.DataDir, "node.log"))
	if !strings.Contains(string(log), "set aside") || !strings.Contains(string(log), "state store behind snapshot, restoring") {
		t.Fatal("the node did not set its state store aside and restore the snapshot")
	}
	asides, _ := filepath.Glob(state + ".unsafe-*")
	if len(asides) != 1 {
		t.Fatalf("set-aside store files: %v", asides)
	}
	if !strings.Contains(p.MustCLI("admin", "domain", "list"), "customer.test") {
		t.Fatal("domain lost in the rebuild")
	}

	// A clean stop syncs the store and drops the mark: a reboot after it
	// costs no rebuild.
	p.Stop()
	if _, err := os.Stat(state + ".boot"); !os.IsNotExist(err) {
		t.Fatalf("boot mark left after a clean stop: %v", err)
	}
}
