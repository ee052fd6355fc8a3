package e2e

import (
	"bytes"
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// smtpSink runs Postfix's smtp-sink on addr, dumping each message into its
// own file under dir.
type smtpSink struct {
	t    *testing.T
	addr string
	dir  string
	cmd  *exec.Cmd
}

func startSmtpSink(t *testing.T, addr string, extra ...string) *smtpSink {
	t.Helper()
	bin, err := exec.LookPath("smtp-sink")
	if err != nil {
		for _, p := range []string{"/usr/sbin/smtp-sink", "/usr/lib/postfix/sbin/smtp-sink"} {
			if _, err := os.Stat(p); err == nil {
				bin = p
			}
		}
	}
	if bin == "" {
		t.Fatal("smtp-sink not found: install Debian's postfix package (.ci/run does)")
	}
	s := &smtpSink{t: t, addr: addr, dir: t.TempDir()}
	args := append([]string{"-u", "root", "-d", filepath.Join(s.dir, "msg.")}, extra...)
	args = append(args, addr, "256")
	s.cmd = exec.Command(bin, args...)
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.cmd.Process.Kill(); s.cmd.Wait() })
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return s
		}
		if time.Now().After(deadline) {
			t.Fatalf("smtp-sink did not come up on %s", addr)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// messages returns each dumped message without the X-* and Received:
// lines smtp-sink adds in front.
func (s *smtpSink) messages() [][]byte {
	entries, _ := os.ReadDir(s.dir)
	var out [][]byte
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(s.dir, e.Name()))
		if err != nil {
			continue
		}
		// smtp-sink ends each dump with an empty line of its own.
		out = append(out, bytes.TrimSuffix(stripSinkHeaders(b), []byte("\n")))
	}
	return out
}

func stripSinkHeaders(b []byte) []byte {
	lines := bytes.SplitAfter(b, []byte("\n"))
	i := 0
	for i < len(lines) && bytes.HasPrefix(lines[i], []byte("X-")) {
		i++
	}
	// smtp-sink's own Received: field and its folded lines.
	if i < len(lines) && bytes.HasPrefix(lines[i], []byte("Received: ")) && bytes.Contains(lines[i+1], []byte("smtp-sink")) {
		i++
		for i < len(lines) && (lines[i][0] == '\t' || lines[i][0] == ' ') {
			i++
		}
	}
	return bytes.Join(lines[i:], nil)
}

func waitFor(t *testing.T, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	for !cond() {
		if ctx.Err() != nil {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// The customer's server is down: the message is spooled. When a real SMTP
// server comes up on that port, `lifeline admin queue flush` delivers it
// byte for byte and the queue is empty.
func TestSpoolThenFlushToSmtpSink(t *testing.T) {
	dest := freePort(t)
	p := newProc(t)
	p.start()
	p.mustCLI("admin", "domain", "add", "customer.test", "--destination", dest)

	body := "From: Sender <sender@example.net>\r\nTo: alice@customer.test\r\nSubject: during the outage\r\n\r\n" +
		strings.Repeat("Please call me back about the contract.\r\n", 50)
	c := dialSMTP(t, p.smtp)
	c.cmd("EHLO client.example.net", "250")
	id := queueID(t, c.send("sender@example.net", []string{"alice@customer.test"}, body))

	waitFor(t, "a failed first attempt", 15*time.Second, func() bool {
		out, _ := p.cli("admin", "queue", "show", id)
		return strings.Contains(out, "attempts 1") && strings.Contains(out, "refused")
	})
	if out := p.mustCLI("admin", "domain", "list"); !strings.Contains(out, "spooling") {
		t.Fatalf("domain list does not show the domain spooling:\n%s", out)
	}

	sink := startSmtpSink(t, dest)
	p.mustCLI("admin", "queue", "flush")
	waitFor(t, "the queue to drain", 15*time.Second, func() bool {
		return strings.Contains(p.mustCLI("admin", "queue", "list"), "0 messages")
	})
	got := sink.messages()
	if len(got) != 1 {
		t.Fatalf("smtp-sink got %d messages, want 1", len(got))
	}
	// smtp-sink stores lines with LF endings; compare in that form.
	want := strings.ReplaceAll(body, "\r\n", "\n")
	if !strings.HasPrefix(string(got[0]), "Received: ") || !strings.HasSuffix(string(got[0]), want) {
		t.Fatalf("delivered message differs from the one sent:\n%s", got[0])
	}
	if out := p.mustCLI("admin", "domain", "list"); strings.Contains(out, "spooling") {
		t.Fatalf("domain still spooling after the drain:\n%s", out)
	}
}

// startSmtpSinkFast runs smtp-sink without dumping messages, for volume.
func startSmtpSinkFast(t *testing.T, addr string) {
	t.Helper()
	bin := "/usr/sbin/smtp-sink"
	cmd := exec.Command(bin, "-u", "root", addr, "1024")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	waitFor(t, "smtp-sink on "+addr, 10*time.Second, func() bool {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
}
