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

	"lifeline/e2e/kit"
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
	p.DataDir = filepath.Join(mnt, "node")
	p.Start()
	p.MustCLI("admin", "domain", "add", "customer.test", "--destination", "127.0.0.1:1")

	c := kit.NewClient(t, p.SMTP)
	c.Cmd("EHLO client.example.net", "250")
	msg := "Subject: before\r\n\r\nhello\r\n"
	queueID(t, c.Send("a@example.net", []string{"u@customer.test"}, msg))
	// A second session starts its transaction while there is room.
	early := kit.NewClient(t, p.SMTP)
	early.Cmd("EHLO client.example.net", "250")
	early.Cmd("MAIL FROM:<a@example.net>", "250")
	early.Cmd("RCPT TO:<u@customer.test>", "250")

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
	early.Cmd("DATA", "354")
	early.Write(big + ".\r\n")
	if line := early.Reply(); !strings.HasPrefix(line, "451 4.3.0") {
		t.Fatalf("body sent into a full disk: got %q, want 451 4.3.0", line)
	}
	// New transactions are refused before the body (the free space is
	// measured once a second).
	kit.Wait(t, 5*time.Second, 50*time.Millisecond, "MAIL to be refused for want of space", func() (bool, error) {
		line := c.Cmd("MAIL FROM:<a@example.net>", "")
		if strings.HasPrefix(line, "250") {
			c.Cmd("RSET", "250")
			return false, nil
		}
		if !strings.HasPrefix(line, "452 4.3.1") {
			t.Fatalf("with the disk full, MAIL got %q, want 452 4.3.1", line)
		}
		return true, nil
	})
	resp, err := http.Get("http://" + p.HTTP + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	hz, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(string(hz), "disk nearly full") {
		t.Fatalf("healthz with the disk full: %d %q", resp.StatusCode, hz)
	}

	os.Remove(filler)
	kit.Wait(t, 15*time.Second, 50*time.Millisecond, "healthz 200 with space back", func() (bool, error) {
		resp, err := http.Get("http://" + p.HTTP + "/healthz")
		if err != nil {
			return false, nil
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK, nil
	})
	// A leader whose Raft log could not be written stepped down (the
	// delivery engine may have tried to record an attempt while the disk
	// was full); with space back it is elected again within moments, and
	// until then the answer is 451, which queues nothing.
	var reply string
	err = kit.WaitErr(t, 15*time.Second, 100*time.Millisecond, func() string { return "a 250 after freeing the disk" }, func() (bool, error) {
		reply = c.Send("a@example.net", []string{"u@customer.test"}, "Subject: after\r\n\r\nhello again\r\n")
		// 451 goes on; 250, or any other answer, ends the wait.
		return !strings.HasPrefix(reply, "451 4.3.0"), nil
	})
	if err != nil || !strings.HasPrefix(reply, "250") {
		t.Fatalf("after freeing the disk, got %q, want 250 (451 for a moment at most)", reply)
	}
	out := p.MustCLI("admin", "queue", "list")
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
	procs := kit.StartCluster(t, binary, 3, func(p *kit.Proc) {
		mnt := t.TempDir()
		if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", mnt).CombinedOutput(); err != nil {
			t.Skipf("cannot mount tmpfs here: %v %s", err, out)
		}
		t.Cleanup(func() { exec.Command("umount", "-l", mnt).Run() })
		p.DataDir = filepath.Join(mnt, "node")
		mounts[p.ID] = mnt
	}, "--min-free-space", "16MiB")
	leader := kit.Leader(procs)
	if leader == nil {
		t.Fatal("no leader")
	}
	leader.MustCLI("admin", "domain", "add", "customer.test", "--destination", "127.0.0.1:1")

	// Leave the leader 8 MiB: under its minimum, with room for its log.
	filler := filepath.Join(mounts[leader.ID], "filler")
	var st syscall.Statfs_t
	if err := syscall.Statfs(mounts[leader.ID], &st); err != nil {
		t.Fatal(err)
	}
	fill := int64(st.Bavail)*int64(st.Bsize) - 8<<20
	if err := os.WriteFile(filler, bytes.Repeat([]byte{1}, int(fill)), 0o600); err != nil {
		t.Fatal(err)
	}
	kit.Wait(t, 15*time.Second, 50*time.Millisecond, "leadership to leave "+leader.ID, func() (bool, error) {
		for _, p := range procs {
			if p == leader {
				continue
			}
			if s, err := p.Status(); err == nil && s.Cluster.State == "Leader" {
				return true, nil
			}
		}
		return false, nil
	})
	for _, p := range procs {
		if p == leader {
			continue
		}
		if reply, err := kit.Send(p.SMTP, "a@example.net", []string{"u@customer.test"}, "Subject: x\r\n\r\nx\r\n"); err != nil || !strings.HasPrefix(reply.String(), "250") {
			t.Fatalf("%s with its own disk fine: %q %v", p.ID, reply, err)
		}
	}
	c := kit.NewClient(t, leader.SMTP)
	c.Cmd("EHLO client.example.net", "250")
	c.Cmd("MAIL FROM:<a@example.net>", "452 4.3.1")
	log, _ := os.ReadFile(filepath.Join(leader.DataDir, "node.log"))
	if !strings.Contains(string(log), "handing leadership on") {
		t.Fatal("the full node did not say why it gave up leadership")
	}

	os.Remove(filler)
	leader.WaitHealthy()
	if reply := c.Send("a@example.net", []string{"u@customer.test"}, "Subject: y\r\n\r\ny\r\n"); !strings.HasPrefix(reply, "250") {
		t.Fatalf("with space back: %q", reply)
	}
}
