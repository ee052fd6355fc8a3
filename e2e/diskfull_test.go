package e2e

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// A node whose disk is full cannot keep a promise, so it must not make
// one. Below --min-free-space it refuses at MAIL with 452 4.3.1 and
// /healthz says why; a transaction that began with room and whose body
// finds the disk full gets 451 4.3.0. Nothing is queued either way, and
// once space is back the same node takes mail again without a restart.
func TestFullDiskAnswers451(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("mounting a small tmpfs needs root (CI runs as root)")
	}
	mnt := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=24m", "tmpfs", mnt).CombinedOutput(); err != nil {
		t.Skipf("cannot mount tmpfs here: %v %s", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", "-l", mnt).Run() })

	p := newProc(t, "--min-free-space", "4MiB")
	p.dataDir = filepath.Join(mnt, "node")
	p.start()
	p.mustCLI("admin", "domain", "add", "customer.test", "--destination", "127.0.0.1:1")

	c := dialSMTP(t, p.smtp)
	c.cmd("EHLO client.example.net", "250")
	msg := "Subject: before\r\n\r\nhello\r\n"
	queueID(t, c.send("a@example.net", []string{"u@customer.test"}, msg))
	// A second session starts its transaction while there is room.
	early := dialSMTP(t, p.smtp)
	early.cmd("EHLO client.example.net", "250")
	early.cmd("MAIL FROM:<a@example.net>", "250")
	early.cmd("RCPT TO:<u@customer.test>", "250")

	filler := filepath.Join(mnt, "filler")
	f, err := os.Create(filler)
	if err != nil {
		t.Fatal(err)
	}
	chunk := bytes.Repeat([]byte{0}, 1<<20)
	for {
		if _, err := f.Write(chunk); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatal(err)
			}
			break
		}
	}
	// Fill the last partial block too.
	for {
		if _, err := f.Write(chunk[:512]); err != nil {
			break
		}
	}
	f.Close()

	// Larger than the slack of any page the node's files already hold: a
	// small message can still land in allocated space and then is safely
	// stored, which is not what this test is about.
	big := "Subject: during\r\n\r\n" + strings.Repeat(strings.Repeat("x", 900)+"\r\n", 80)
	early.cmd("DATA", "354")
	early.conn.Write([]byte(big + ".\r\n"))
	if line := early.reply(); !strings.HasPrefix(line, "451 4.3.0") {
		t.Fatalf("body sent into a full disk: got %q, want 451 4.3.0", line)
	}
	// New transactions are refused before the body (the free space is
	// measured once a second).
	waitFor(t, "MAIL to be refused for want of space", 5*time.Second, func() bool {
		line := c.cmd("MAIL FROM:<a@example.net>", "")
		if strings.HasPrefix(line, "250") {
			c.cmd("RSET", "250")
			return false
		}
		if !strings.HasPrefix(line, "452 4.3.1") {
			t.Fatalf("with the disk full, MAIL got %q, want 452 4.3.1", line)
		}
		return true
	})
	resp, err := http.Get("http://" + p.http + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	hz, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(string(hz), "disk nearly full") {
		t.Fatalf("healthz with the disk full: %d %q", resp.StatusCode, hz)
	}

	os.Remove(filler)
	waitFor(t, "healthz 200 with space back", 15*time.Second, func() bool {
		resp, err := http.Get("http://" + p.http + "/healthz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	// A leader whose Raft log could not be written stepped down (the
	// delivery engine may have tried to record an attempt while the disk
	// was full); with space back it is elected again within moments, and
	// until then the answer is 451, which queues nothing.
	deadline := time.Now().Add(15 * time.Second)
	for {
		reply := c.send("a@example.net", []string{"u@customer.test"}, "Subject: after\r\n\r\nhello again\r\n")
		if strings.HasPrefix(reply, "250") {
			break
		}
		if !strings.HasPrefix(reply, "451 4.3.0") || time.Now().After(deadline) {
			t.Fatalf("after freeing the disk, got %q, want 250 (451 for a moment at most)", reply)
		}
		time.Sleep(100 * time.Millisecond)
	}
	out := p.mustCLI("admin", "queue", "list")
	if !strings.Contains(out, "2 messages") {
		t.Fatalf("want exactly the two accepted messages queued, got:\n%s", out)
	}
}

// A leader whose disk runs low hands leadership to a node that has room,
// so the cluster keeps taking mail on the other nodes, while the full node
// refuses at MAIL. With space back it serves again.
func TestLeaderWithFullDiskStepsDown(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("mounting a small tmpfs needs root (CI runs as root)")
	}
	mounts := map[string]string{}
	procs := startClusterSetup(t, 3, func(p *proc) {
		mnt := t.TempDir()
		if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", mnt).CombinedOutput(); err != nil {
			t.Skipf("cannot mount tmpfs here: %v %s", err, out)
		}
		t.Cleanup(func() { exec.Command("umount", "-l", mnt).Run() })
		p.dataDir = filepath.Join(mnt, "node")
		mounts[p.id] = mnt
	}, "--min-free-space", "16MiB")
	leader := leaderProc(t, procs)
	if leader == nil {
		t.Fatal("no leader")
	}
	leader.mustCLI("admin", "domain", "add", "customer.test", "--destination", "127.0.0.1:1")

	// Leave the leader 8 MiB: under its minimum, with room for its log.
	filler := filepath.Join(mounts[leader.id], "filler")
	var st syscall.Statfs_t
	if err := syscall.Statfs(mounts[leader.id], &st); err != nil {
		t.Fatal(err)
	}
	fill := int64(st.Bavail)*int64(st.Bsize) - 8<<20
	if err := os.WriteFile(filler, bytes.Repeat([]byte{1}, int(fill)), 0o600); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "leadership to leave "+leader.id, 15*time.Second, func() bool {
		for _, p := range procs {
			if p == leader {
				continue
			}
			if s, err := p.status(); err == nil && s.Cluster.State == "Leader" {
				return true
			}
		}
		return false
	})
	for _, p := range procs {
		if p == leader {
			continue
		}
		if reply, err := sendOnce(p.smtp, "a@example.net", "u@customer.test", "Subject: x\r\n\r\nx\r\n"); err != nil || !strings.HasPrefix(reply, "250") {
			t.Fatalf("%s with its own disk fine: %q %v", p.id, reply, err)
		}
	}
	c := dialSMTP(t, leader.smtp)
	c.cmd("EHLO client.example.net", "250")
	c.cmd("MAIL FROM:<a@example.net>", "452 4.3.1")
	log, _ := os.ReadFile(filepath.Join(leader.dataDir, "node.log"))
	if !strings.Contains(string(log), "handing leadership on") {
		t.Fatal("the full node did not say why it gave up leadership")
	}

	os.Remove(filler)
	leader.waitHealthy()
	if reply := c.send("a@example.net", []string{"u@customer.test"}, "Subject: y\r\n\r\ny\r\n"); !strings.HasPrefix(reply, "250") {
		t.Fatalf("with space back: %q", reply)
	}
}
