package e2e

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"strings"
	"testing"
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
	p.start()
	p.mustCLI("admin", "domain", "add", "customer.test", "--destination", "127.0.0.1:1")

	body := "From: Sender <sender@example.net>\r\nTo: alice@customer.test\r\nSubject: survives\r\n\r\n" +
		strings.Repeat("This line must come back exactly as it was sent.\r\n", 200)
	c := dialSMTP(t, p.smtp)
	c.cmd("EHLO client.example.net", "250")
	c.cmd("MAIL FROM:<sender@example.net> RET=HDRS ENVID=env42", "250")
	c.cmd("RCPT TO:<alice@customer.test> NOTIFY=FAILURE,DELAY ORCPT=rfc822;alice@customer.test", "250")
	c.cmd("RCPT TO:<Bob@CUSTOMER.test>", "250")
	c.cmd("DATA", "354")
	c.conn.Write([]byte(body + ".\r\n"))
	id := queueID(t, c.reply())
	p.kill9()

	p.start()
	var msgs []queuedMessage
	if err := json.Unmarshal([]byte(p.mustCLI("admin", "queue", "list", "--json")), &msgs); err != nil {
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
	stored, err := p.storedBody(m.Blob)
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
	if !strings.Contains(p.mustCLI("admin", "queue", "show", id), "alice@customer.test") {
		t.Fatal("queue show does not list the recipient")
	}
}

// Mail to a domain nobody protects is refused and nothing is queued, on a
// node that has just restarted as much as on a fresh one.
func TestRelayRefusedOverRealProcess(t *testing.T) {
	p := newProc(t)
	p.start()
	p.mustCLI("admin", "domain", "add", "customer.test", "--destination", "127.0.0.1:1")
	c := dialSMTP(t, p.smtp)
	c.cmd("EHLO client.example.net", "250")
	c.cmd("MAIL FROM:<spammer@example.net>", "250")
	for _, rcpt := range []string{"victim@elsewhere.test", "victim%elsewhere.test@customer.test", "victim@customer.test.elsewhere.test", "@customer.test:victim@elsewhere.test"} {
		if line := c.cmd("RCPT TO:<"+rcpt+">", "5"); !strings.HasPrefix(line, "554 5.7.1") {
			t.Errorf("RCPT %s: got %q, want 554 5.7.1", rcpt, line)
		}
	}
	out := p.mustCLI("admin", "queue", "list")
	if !strings.Contains(out, "0 messages") {
		t.Fatalf("queue not empty after refused relay:\n%s", out)
	}
}
