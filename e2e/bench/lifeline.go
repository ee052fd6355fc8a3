package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// buildLifeline builds the binary from the module that contains the
// working directory, so `go run ./e2e/bench` measures the tree it sits in.
func buildLifeline(ctx context.Context, outDir string) (string, error) {
	out, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		return "", errors.New("not inside the lifeline module: run from the repository or pass -binary")
	}
	if err := os.MkdirAll(outDir, 0o755); err != nil {
		return "", err
	}
	bin := filepath.Join(outDir, "lifeline")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, ".")
	cmd.Dir = filepath.Dir(gomod)
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build: %w\n%s", err, out)
	}
	return bin, nil
}

// nodeSpec is everything needed to start, and later restart, one node:
// the same ports and data directory each time.
type nodeSpec struct {
	id         string
	dir        string // holds data/ and node.log
	smtpAddr   string
	httpAddr   string
	raftAddr   string
	gossipAddr string
	token      string
	env        []string // added to the environment, e.g. the cluster key
	args       []string // added flags, e.g. --join
}

// newNodeSpec picks free loopback ports for a node; token "" makes one.
func newNodeSpec(id, dir, token string) (nodeSpec, error) {
	ports, err := freePorts(4)
	if err != nil {
		return nodeSpec{}, err
	}
	if token == "" {
		token = randomHex(24)
	}
	return nodeSpec{id: id, dir: dir, smtpAddr: ports[0], httpAddr: ports[1], raftAddr: ports[2], gossipAddr: ports[3], token: token}, nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// lifelineNode is one `lifeline node` running as a real process.
type lifelineNode struct {
	bin      string
	spec     nodeSpec
	cmd      *exec.Cmd
	smtpAddr string
	httpAddr string
	token    string
	logPath  string
	exited   chan struct{}
	waitErr  error
}

// startLifeline starts a single-node cluster and waits until it is healthy.
func startLifeline(ctx context.Context, bin, dir string) (*lifelineNode, error) {
	spec, err := newNodeSpec("bench1", dir, "")
	if err != nil {
		return nil, err
	}
	n, err := launchNode(bin, spec)
	if err != nil {
		return nil, err
	}
	if err := n.waitHealthy(ctx, 60*time.Second); err != nil {
		n.stop()
		return nil, fmt.Errorf("%w%s", err, n.logTail())
	}
	return n, nil
}

// launchNode starts the process and returns at once. A restart with the
// same spec appends to the same log and keeps the data directory.
func launchNode(bin string, spec nodeSpec) (*lifelineNode, error) {
	n := &lifelineNode{
		bin:      bin,
		spec:     spec,
		smtpAddr: spec.smtpAddr,
		httpAddr: spec.httpAddr,
		token:    spec.token,
		logPath:  filepath.Join(spec.dir, "node.log"),
		exited:   make(chan struct{}),
	}
	dataDir := filepath.Join(spec.dir, "data")
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return nil, err
	}
	logf, err := os.OpenFile(n.logPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return nil, err
	}
	defer logf.Close()

	args := []string{"node",
		"--id", spec.id,
		"--data-dir", dataDir,
		"--smtp-addr", spec.smtpAddr,
		"--http-addr", spec.httpAddr,
		"--raft-addr", spec.raftAddr,
		"--gossip-addr", spec.gossipAddr,
	}
	n.cmd = exec.Command(bin, append(args, spec.args...)...)
	n.cmd.Env = append(append(os.Environ(), "LIFELINE_ADMIN_TOKEN="+spec.token), spec.env...)
	n.cmd.Stdout, n.cmd.Stderr = logf, logf
	n.cmd.SysProcAttr = &syscall.SysProcAttr{
		// Its own process group: Ctrl-C reaches only the harness, which
		// then stops the node in order. If the harness dies, so does it.
		Setpgid:   true,
		Pdeathsig: syscall.SIGKILL,
	}
	if err := n.cmd.Start(); err != nil {
		return nil, err
	}
	go func() {
		n.waitErr = n.cmd.Wait()
		close(n.exited)
	}()
	return n, nil
}

func (n *lifelineNode) waitHealthy(ctx context.Context, limit time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	url := "http://" + n.httpAddr + "/healthz"
	client := &http.Client{Timeout: 2 * time.Second}
	last := "no answer"
	return poll(ctx, 50*time.Millisecond, func() (bool, error) {
		select {
		case <-n.exited:
			return false, fmt.Errorf("lifeline node exited during start: %v", n.waitErr)
		default:
		}
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		resp, err := client.Do(req)
		if err != nil {
			last = err.Error()
			return false, nil
		}
		resp.Body.Close()
		last = resp.Status
		return resp.StatusCode == http.StatusOK, nil
	}, func() string { return "GET " + url + ": " + last })
}

// addDomain protects the benchmark domain. The API is retried briefly
// because a healthy single node may still be settling its first term.
func (n *lifelineNode) addDomain(ctx context.Context, domain, dest string) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	var last string
	err := poll(ctx, 200*time.Millisecond, func() (bool, error) {
		cmd := exec.CommandContext(ctx, n.bin, "admin", "domain", "add", domain,
			"--destination", dest, "--server", "http://"+n.httpAddr, "--token", n.token)
		out, err := cmd.CombinedOutput()
		if err == nil {
			return true, nil
		}
		last = fmt.Sprintf("%v: %s", err, strings.TrimSpace(string(out)))
		// A retry after an attempt whose answer was lost finds the domain
		// already there, which is what we wanted.
		if strings.Contains(strings.ToLower(string(out)), "exist") {
			return true, nil
		}
		return false, nil
	}, func() string { return "lifeline admin domain add: " + last })
	if err != nil {
		return fmt.Errorf("%w%s", err, n.logTail())
	}
	return nil
}

// kill ends the node with SIGKILL, as a crash would, and waits for it.
func (n *lifelineNode) kill() {
	select {
	case <-n.exited:
		return
	default:
	}
	n.cmd.Process.Signal(syscall.SIGKILL)
	<-n.exited
}

func (n *lifelineNode) running() bool {
	select {
	case <-n.exited:
		return false
	default:
		return true
	}
}

// stop ends the node gracefully, then forcibly if it does not go.
func (n *lifelineNode) stop() {
	select {
	case <-n.exited:
		return
	default:
	}
	n.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-n.exited:
	case <-time.After(15 * time.Second):
		n.cmd.Process.Kill()
		<-n.exited
	}
}

// healthz is the body of GET /healthz, which needs no token.
type healthz struct {
	ID           string `json:"id"`
	State        string `json:"state"`
	Leader       string `json:"leader"`
	AppliedIndex uint64 `json:"applied_index"`
	Status       string `json:"status"`
}

// health asks /healthz once; code is the HTTP status, 0 when no answer.
func (n *lifelineNode) health(ctx context.Context, timeout time.Duration) (int, healthz, error) {
	var h healthz
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+n.httpAddr+"/healthz", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, h, err
	}
	defer resp.Body.Close()
	err = json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&h)
	return resp.StatusCode, h, err
}

// statusReport is the part of GET /api/v1/status the bench reads.
type statusReport struct {
	Cluster struct {
		ID           string `json:"id"`
		State        string `json:"state"`
		LeaderID     string `json:"leader_id"`
		CommitIndex  uint64 `json:"commit_index"`
		AppliedIndex uint64 `json:"applied_index"`
		Servers      []struct {
			ID       string `json:"id"`
			Suffrage string `json:"suffrage"`
			Leader   bool   `json:"leader"`
		} `json:"servers"`
	} `json:"cluster"`
	Queue struct {
		Messages int `json:"messages"`
	} `json:"queue"`
	Healthy bool `json:"healthy"`
}

// domainInfo is one entry of GET /api/v1/domains.
type domainInfo struct {
	Name        string `json:"name"`
	Destination string `json:"destination"`
	Spooling    bool   `json:"spooling"`
	LastError   string `json:"last_error"`
}

// api calls the JSON API with the operator token, straight over HTTP: a
// poll every 100 ms must not cost a process start each time.
func (n *lifelineNode) api(ctx context.Context, method, path string, out any) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, "http://"+n.httpAddr+path, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+n.token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("%s %s: %s: %s", method, path, resp.Status, strings.TrimSpace(string(body)))
	}
	if out == nil {
		return nil
	}
	return json.Unmarshal(body, out)
}

func (n *lifelineNode) status(ctx context.Context) (statusReport, error) {
	var st statusReport
	return st, n.api(ctx, http.MethodGet, "/api/v1/status", &st)
}

func (n *lifelineNode) domains(ctx context.Context) ([]domainInfo, error) {
	var r struct {
		Domains []domainInfo `json:"domains"`
	}
	return r.Domains, n.api(ctx, http.MethodGet, "/api/v1/domains", &r)
}

// queueEmpty asks for one page of one message: cheap on a large spool,
// unlike the status report, which counts the whole spool.
func (n *lifelineNode) queueEmpty(ctx context.Context) (bool, error) {
	var page struct {
		Messages []json.RawMessage `json:"messages"`
	}
	if err := n.api(ctx, http.MethodGet, "/api/v1/queue?limit=1", &page); err != nil {
		return false, err
	}
	return len(page.Messages) == 0, nil
}

func (n *lifelineNode) logTail() string { return fileTail(n.logPath, 30, "lifeline node log") }

// freePorts finds n distinct free loopback ports by holding all listeners
// open until each has its own port.
func freePorts(n int) ([]string, error) {
	var addrs []string
	var lns []net.Listener
	defer func() {
		for _, ln := range lns {
			ln.Close()
		}
	}()
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		lns = append(lns, ln)
		addrs = append(addrs, ln.Addr().String())
	}
	return addrs, nil
}

// deadAddr is a loopback port that nothing listens on: a mail server that
// is down, so every accepted message stays queued.
func deadAddr() (string, error) {
	a, err := freePorts(1)
	if err != nil {
		return "", err
	}
	return a[0], nil
}

// waitGreeting polls until a server at addr answers with a 220 greeting.
func waitGreeting(ctx context.Context, addr string, limit time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	last := "no answer"
	return poll(ctx, 50*time.Millisecond, func() (bool, error) {
		d := net.Dialer{Timeout: time.Second}
		c, err := d.DialContext(ctx, "tcp", addr)
		if err != nil {
			last = err.Error()
			return false, nil
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(5 * time.Second))
		line, err := bufio.NewReader(c).ReadString('\n')
		if err != nil {
			last = err.Error()
			return false, nil
		}
		last = strings.TrimSpace(line)
		if code, _ := strconv.Atoi(line[:min(3, len(line))]); code == 220 {
			c.Write([]byte("QUIT\r\n"))
			return true, nil
		}
		return false, nil
	}, func() string { return addr + ": " + last })
}

// poll calls try every interval until it reports done, fails, or ctx ends;
// the error then says what the last try saw.
func poll(ctx context.Context, interval time.Duration, try func() (bool, error), status func() string) error {
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		done, err := try()
		if err != nil {
			return err
		}
		if done {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s (gave up: %w)", status(), ctx.Err())
		case <-tick.C:
		}
	}
}
