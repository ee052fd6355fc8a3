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
	"strings"
	"sync"
	"syscall"
	"time"
)

// buildLifeline builds the binary from the module that contains the
// working directory, so `go run ./e2e/scale` measures the tree it sits in.
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

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// freePorts finds n distinct free loopback ports by holding every
// listener open until all have their port.
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

// node is one `lifeline node` process on loopback.
type node struct {
	id         string
	dir        string // holds data/ and node.log
	dataDir    string
	logPath    string
	smtpAddr   string
	httpAddr   string
	raftAddr   string
	gossipAddr string
	token      string
	bin        string

	cmd     *exec.Cmd
	started time.Time
	exited  chan struct{}
	waitErr error
}

func newNode(bin, id, dir, token string) (*node, error) {
	ports, err := freePorts(4)
	if err != nil {
		return nil, err
	}
	return &node{
		id: id, dir: dir, dataDir: filepath.Join(dir, "data"), logPath: filepath.Join(dir, "node.log"),
		smtpAddr: ports[0], httpAddr: ports[1], raftAddr: ports[2], gossipAddr: ports[3],
		token: token, bin: bin, exited: make(chan struct{}),
	}, nil
}

// start launches the process and returns at once.
func (n *node) start(key string, expect int, join []string) error {
	if err := os.MkdirAll(n.dataDir, 0o700); err != nil {
		return err
	}
	logf, err := os.OpenFile(n.logPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	defer logf.Close()
	args := []string{"node",
		"--id", n.id,
		"--data-dir", n.dataDir,
		"--smtp-addr", n.smtpAddr,
		"--http-addr", n.httpAddr,
		"--raft-addr", n.raftAddr,
		"--gossip-addr", n.gossipAddr,
		"--bootstrap-expect", fmt.Sprint(expect),
		"--join", strings.Join(join, ","),
		"--log-level", "warn",
	}
	n.cmd = exec.Command(n.bin, args...)
	n.cmd.Env = append(os.Environ(), "LIFELINE_ADMIN_TOKEN="+n.token, "LIFELINE_CLUSTER_KEY="+key)
	n.cmd.Stdout, n.cmd.Stderr = logf, logf
	n.cmd.SysProcAttr = &syscall.SysProcAttr{
		// Its own process group, so Ctrl-C reaches only the harness, which
		// stops the nodes itself; if the harness dies, so do they.
		Setpgid:   true,
		Pdeathsig: syscall.SIGKILL,
	}
	if err := n.cmd.Start(); err != nil {
		return err
	}
	n.started = time.Now()
	go func() {
		n.waitErr = n.cmd.Wait()
		close(n.exited)
	}()
	return nil
}

func (n *node) pid() int {
	if n.cmd == nil || n.cmd.Process == nil {
		return 0
	}
	return n.cmd.Process.Pid
}

func (n *node) running() bool {
	if n.cmd == nil {
		return false
	}
	select {
	case <-n.exited:
		return false
	default:
		return true
	}
}

// exitErr is non-nil once the process has ended on its own.
func (n *node) exitErr() error {
	if n.cmd == nil || n.running() {
		return nil
	}
	return fmt.Errorf("%s exited: %v%s", n.id, n.waitErr, n.logTail())
}

// stop ends the node gracefully, then with SIGKILL if it does not go.
func (n *node) stop() {
	if !n.running() {
		return
	}
	n.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-n.exited:
	case <-time.After(15 * time.Second):
		n.cmd.Process.Kill()
		<-n.exited
	}
}

func (n *node) logTail() string { return fileTail(n.logPath, 30, n.id+" log") }

// healthz is the body of GET /healthz, which needs no token.
type healthz struct {
	ID           string `json:"id"`
	State        string `json:"state"`
	Leader       string `json:"leader"`
	AppliedIndex uint64 `json:"applied_index"`
	Status       string `json:"status"`
	Error        string `json:"error"`
}

var httpClient = &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 4}}

// health asks /healthz once; code is 0 when there was no answer.
func (n *node) health(ctx context.Context) (int, healthz, error) {
	var h healthz
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+n.httpAddr+"/healthz", nil)
	resp, err := httpClient.Do(req)
	if err != nil {
		return 0, h, err
	}
	defer resp.Body.Close()
	err = json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&h)
	return resp.StatusCode, h, err
}

// statusReport is the part of GET /api/v1/status the harness reads.
type statusReport struct {
	Cluster struct {
		ID           string `json:"id"`
		State        string `json:"state"`
		LeaderID     string `json:"leader_id"`
		Term         uint64 `json:"term"`
		CommitIndex  uint64 `json:"commit_index"`
		AppliedIndex uint64 `json:"applied_index"`
		Servers      []struct {
			ID       string `json:"id"`
			Suffrage string `json:"suffrage"`
			Leader   bool   `json:"leader"`
		} `json:"servers"`
	} `json:"cluster"`
	Queue struct {
		Messages int64 `json:"messages"`
		Bytes    int64 `json:"bytes"`
	} `json:"queue"`
	Healthy bool              `json:"healthy"`
	Problem string            `json:"problem"`
	Members []json.RawMessage `json:"members"`
	BlobLag int64             `json:"blob_lag"`
}

func (s statusReport) suffrage(id string) string {
	for _, sv := range s.Cluster.Servers {
		if sv.ID == id {
			return sv.Suffrage
		}
	}
	return ""
}

func (s statusReport) voters() int {
	v := 0
	for _, sv := range s.Cluster.Servers {
		if sv.Suffrage == "voter" {
			v++
		}
	}
	return v
}

// apiError is a non-2xx answer of the JSON API.
type apiError struct {
	code int
	text string
}

func (e *apiError) Error() string { return fmt.Sprintf("HTTP %d: %s", e.code, e.text) }

// api calls the JSON API with the operator token.
func (n *node) api(ctx context.Context, timeout time.Duration, method, path string, out any) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, "http://"+n.httpAddr+path, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+n.token)
	resp, err := httpClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode/100 != 2 {
		return &apiError{resp.StatusCode, strings.TrimSpace(string(body))}
	}
	if out == nil {
		return nil
	}
	return json.Unmarshal(body, out)
}

func (n *node) status(ctx context.Context) (statusReport, error) {
	var st statusReport
	return st, n.api(ctx, 10*time.Second, http.MethodGet, "/api/v1/status", &st)
}

// admin runs `lifeline admin ARGS...` against this node, as an operator
// would, and returns its combined output.
func (n *node) admin(ctx context.Context, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, n.bin, append([]string{"admin"}, args...)...)
	cmd.Env = append(os.Environ(), "LIFELINE_SERVER=http://"+n.httpAddr, "LIFELINE_TOKEN="+n.token)
	out, err := cmd.CombinedOutput()
	return strings.TrimSpace(string(out)), err
}

// queuedBlob is one spooled message and the hash of its body.
type queuedBlob struct {
	ID         string `json:"id"`
	Blob       string `json:"blob"`
	Recipients []struct {
		Attempts int `json:"attempts"`
	} `json:"recipients"`
}

// queue lists the whole spool page by page.
func (n *node) queue(ctx context.Context) ([]queuedBlob, error) {
	var all []queuedBlob
	after := ""
	for {
		var page struct {
			Messages []queuedBlob `json:"messages"`
			Next     string       `json:"next"`
		}
		path := "/api/v1/queue?limit=1000"
		if after != "" {
			path += "&after=" + after
		}
		if err := n.api(ctx, time.Minute, http.MethodGet, path, &page); err != nil {
			return nil, err
		}
		all = append(all, page.Messages...)
		if page.Next == "" || len(page.Messages) == 0 {
			return all, nil
		}
		after = page.Next
	}
}

// cluster is the set of nodes the harness started; it stops them all.
type cluster struct {
	mu    sync.Mutex
	nodes []*node
	key   string
	token string
}

func (c *cluster) add(n *node) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.nodes = append(c.nodes, n)
}

func (c *cluster) list() []*node {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]*node(nil), c.nodes...)
}

// stop ends every node at once: one after the other, each survivor would
// wait for a quorum that is going away.
func (c *cluster) stop() {
	var wg sync.WaitGroup
	for _, n := range c.list() {
		wg.Go(n.stop)
	}
	wg.Wait()
}

// crashed reports the first node that exited on its own.
func (c *cluster) crashed() error {
	for _, n := range c.list() {
		if err := n.exitErr(); err != nil {
			return err
		}
	}
	return nil
}

// poll calls try every interval until it reports done, fails, or ctx
// ends; the error then says what the last try saw.
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
			return fmt.Errorf("%s (gave up: %w)", status(), context.Cause(ctx))
		case <-tick.C:
		}
	}
}

// fileTail returns the last lines of a file, framed for an error message.
func fileTail(path string, lines int, what string) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	var ring []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		ring = append(ring, sc.Text())
		if len(ring) > lines {
			ring = ring[1:]
		}
	}
	if len(ring) == 0 {
		return ""
	}
	return fmt.Sprintf("\n--- last lines of %s (%s) ---\n%s", what, path, strings.Join(ring, "\n"))
}

// attemptStats summarises the delivery attempts of a sample of the spool:
// with the destination down and the domain spooling, the leader should
// probe one message per interval, not retry them all.
type attemptStats struct {
	Sampled    int     `json:"sampled_messages"`
	Tried      int     `json:"messages_tried"` // at least one attempt
	Mean       float64 `json:"mean_attempts"`
	Max        int     `json:"max_attempts"`
	AllSpooled int     `json:"spool_messages"`
}

func sampleAttempts(q []queuedBlob, limit int) attemptStats {
	st := attemptStats{AllSpooled: len(q)}
	total := 0
	for i, m := range q {
		if i >= limit {
			break
		}
		st.Sampled++
		a := 0
		for _, r := range m.Recipients {
			a += r.Attempts
		}
		if a > 0 {
			st.Tried++
		}
		total += a
		st.Max = max(st.Max, a)
	}
	if st.Sampled > 0 {
		st.Mean = float64(total) / float64(st.Sampled)
	}
	return st
}
