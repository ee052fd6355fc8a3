// Package e2e runs real lifeline processes on loopback and talks to them
// the way operators and sending servers do.
package e2e

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"lifeline/cluster/blob"
)

var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "lifeline-e2e-bin-")
	if err != nil {
		panic(err)
	}
	binary = filepath.Join(dir, "lifeline")
	build := exec.Command("go", "build", "-o", binary, ".")
	build.Dir = ".."
	build.Stdout, build.Stderr = os.Stdout, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building lifeline:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// proc is one `lifeline node` process.
type proc struct {
	t       *testing.T
	id      string
	env     []string
	dataDir string
	smtp    string
	http    string
	raft    string
	gossip  string
	token   string
	cmd     *exec.Cmd
	log     *os.File
	extra   []string
	// bin, when set, is the binary this node runs instead of the one
	// built for the tests (the next release, in the upgrade test); a
	// restart on fresh ports keeps it.
	bin string

	cleanupSet bool
	// logStart is where this launch's lines begin in node.log.
	logStart int64
}

func newProc(t *testing.T, extra ...string) *proc {
	t.Helper()
	tok := make([]byte, 16)
	rand.Read(tok)
	return &proc{
		t: t, dataDir: t.TempDir(), smtp: freePort(t), http: freePort(t), raft: freePort(t), gossip: freePort(t),
		token: hex.EncodeToString(tok), extra: extra, id: "n1",
	}
}

func (p *proc) launch() {
	p.t.Helper()
	args := append([]string{"node", "--id", p.id, "--data-dir", p.dataDir, "--smtp-addr", p.smtp,
		"--http-addr", p.http, "--raft-addr", p.raft, "--gossip-addr", p.gossip, "--hostname", "mx.lifeline.test"}, p.extra...)
	bin := binary
	if p.bin != "" {
		bin = p.bin
	}
	p.cmd = exec.Command(bin, args...)
	p.cmd.Env = append(append(os.Environ(), "LIFELINE_ADMIN_TOKEN="+p.token), p.env...)
	os.MkdirAll(p.dataDir, 0o700)
	logPath := filepath.Join(p.dataDir, "node.log")
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		p.t.Fatal(err)
	}
	p.log = f
	if fi, err := f.Stat(); err == nil {
		p.logStart = fi.Size()
	}
	p.cmd.Stdout, p.cmd.Stderr = f, f
	if err := p.cmd.Start(); err != nil {
		p.t.Fatal(err)
	}
	cmd := p.cmd
	p.t.Cleanup(func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
			cmd.Wait()
		}
	})
	if !p.cleanupSet {
		p.cleanupSet = true
		p.t.Cleanup(func() {
			if p.t.Failed() {
				b, _ := os.ReadFile(logPath)
				p.t.Logf("node %s log (last 6000 bytes):\n%s", p.id, tail(b, 6000))
			}
		})
	}
}

func tail(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}

// start launches the node and waits until it can take mail.
func (p *proc) start() {
	p.t.Helper()
	p.launch()
	p.waitHealthy()
}

// exitedOnBusyPort reports whether the node stopped because a port picked
// for it was taken meanwhile by another process on this machine; the
// caller then moves it to fresh ports.
func (p *proc) exitedOnBusyPort() bool {
	if p.cmd == nil || p.cmd.ProcessState != nil {
		return false
	}
	// A node that cannot bind logs this and exits at once.
	b, _ := os.ReadFile(filepath.Join(p.dataDir, "node.log"))
	if int64(len(b)) < p.logStart {
		return false
	}
	return strings.Contains(string(b[p.logStart:]), "address already in use")
}

// waitHealthy waits until the node can take mail and its API accepts the
// operator token (the leader stores the token just after the election).
func (p *proc) waitHealthy() {
	p.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if p.exitedOnBusyPort() {
			break
		}
		req, _ := http.NewRequest("GET", "http://"+p.http+"/api/v1/status", nil)
		req.Header.Set("Authorization", "Bearer "+p.token)
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				hz, err := http.Get("http://" + p.http + "/healthz")
				if err == nil {
					hz.Body.Close()
					if hz.StatusCode == 200 {
						return
					}
				}
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	if p.exitedOnBusyPort() {
		p.cmd.Wait()
		p.smtp, p.http = freePort(p.t), freePort(p.t)
		p.t.Logf("node %s: a port was taken by another process; restarting on fresh ports", p.id)
		p.launch()
		p.waitHealthy()
		return
	}
	p.t.Fatal("node did not become healthy within 30s")
}

func (p *proc) kill9() {
	p.t.Helper()
	p.cmd.Process.Signal(syscall.SIGKILL)
	p.cmd.Wait()
	p.log.Close()
}

// cli runs `lifeline` against this node and returns stdout.
// storedBody reads the body named hash from the node's own store on disk,
// without asking the node (which would fetch a missing body from a peer).
func (p *proc) storedBody(hash string) ([]byte, error) {
	st, err := blob.Inspect(filepath.Join(p.dataDir, "blobs"))
	if err != nil {
		return nil, err
	}
	r, err := st.Open(hash)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	return io.ReadAll(r)
}

// storedBodies reports which of hashes the node's store holds.
func (p *proc) storedBodies(hashes []string) (have int, err error) {
	st, err := blob.Inspect(filepath.Join(p.dataDir, "blobs"))
	if err != nil {
		return 0, err
	}
	for _, h := range hashes {
		if st.Has(h) {
			have++
		}
	}
	return have, nil
}

func (p *proc) cli(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary, args...)
	cmd.Env = append(os.Environ(), "LIFELINE_SERVER=http://"+p.http, "LIFELINE_TOKEN="+p.token)
	var out, errb strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	if err != nil {
		return out.String(), fmt.Errorf("%v: %s", err, errb.String())
	}
	return out.String(), nil
}

// mustCLI runs a command that must succeed. A 503 (no leader at this
// moment, or a leader change with the outcome unknown) is retried for a
// while, as an operator would; a retried add that finds its own earlier
// attempt committed (409) counts as done.
func (p *proc) mustCLI(args ...string) string {
	p.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	retried := false
	for {
		out, err := p.cli(args...)
		if err == nil {
			return out
		}
		if retried && strings.Contains(err.Error(), "409") && len(args) > 2 && args[2] == "add" {
			return out
		}
		if !strings.Contains(err.Error(), "503") || time.Now().After(deadline) {
			p.t.Fatalf("lifeline %s: %v", strings.Join(args, " "), err)
		}
		retried = true
		time.Sleep(200 * time.Millisecond)
	}
}

// smtpClient is a byte-exact SMTP client for tests.
type smtpClient struct {
	t    *testing.T
	conn net.Conn
	r    *bufio.Reader
}

func dialSMTP(t *testing.T, addr string) *smtpClient {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	conn.SetDeadline(time.Now().Add(60 * time.Second))
	c := &smtpClient{t: t, conn: conn, r: bufio.NewReader(conn)}
	t.Cleanup(func() { conn.Close() })
	c.expect("220")
	return c
}

// reply reads one possibly multi-line reply and returns its last line.
func (c *smtpClient) reply() string {
	c.t.Helper()
	for {
		line, err := c.r.ReadString('\n')
		if err != nil {
			c.t.Fatalf("reading reply: %v", err)
		}
		line = strings.TrimRight(line, "\r\n")
		if len(line) < 4 || line[3] != '-' {
			return line
		}
	}
}

func (c *smtpClient) expect(prefix string) string {
	c.t.Helper()
	line := c.reply()
	if !strings.HasPrefix(line, prefix) {
		c.t.Fatalf("want reply %s..., got %q", prefix, line)
	}
	return line
}

func (c *smtpClient) cmd(line, want string) string {
	c.t.Helper()
	fmt.Fprintf(c.conn, "%s\r\n", line)
	return c.expect(want)
}

// send runs one transaction and returns the final reply.
func (c *smtpClient) send(from string, to []string, body string) string {
	c.t.Helper()
	c.cmd("MAIL FROM:<"+from+">", "250")
	for _, r := range to {
		c.cmd("RCPT TO:<"+r+">", "250")
	}
	c.cmd("DATA", "354")
	fmt.Fprintf(c.conn, "%s.\r\n", body)
	return c.reply()
}

func queueID(t *testing.T, reply string) string {
	t.Helper()
	i := strings.Index(reply, "queued as ")
	if !strings.HasPrefix(reply, "250 2.0.0") || i < 0 {
		t.Fatalf("not a queued reply: %q", reply)
	}
	return strings.Fields(reply[i+len("queued as "):])[0]
}
