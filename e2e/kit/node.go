package kit

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
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
	"testing"
	"time"
)

// Build builds the lifeline binary into outDir from the module that holds
// the working directory, so that a test or a measurement runs the tree it
// sits in, and returns its path.
func Build(ctx context.Context, outDir string) (string, error) {
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

// FreePorts finds n distinct free loopback addresses by holding every
// listener open until all have their port. Another process may take one
// before the node binds it; Proc moves a node that lost a port.
func FreePorts(n int) ([]string, error) {
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

// FreePort is one free loopback address: a closed port, say, that stands
// for a mail server that is down.
func FreePort(t testing.TB) string {
	t.Helper()
	a, err := FreePorts(1)
	if err != nil {
		t.Fatal(err)
	}
	return a[0]
}

// RandomHex is n random bytes in hex: tokens and cluster keys.
func RandomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// Node is one `lifeline node` process and everything it takes to start it
// again with the same identity and data: a restart runs Bin, with the
// addresses and arguments the fields hold at that moment.
type Node struct {
	ID      string
	Bin     string
	DataDir string
	// LogPath receives the process's output, appended across launches;
	// "" is node.log in the data directory.
	LogPath string
	SMTP    string
	HTTP    string
	Raft    string
	Gossip  string
	// Token is the operator token: LIFELINE_ADMIN_TOKEN at start, and the
	// bearer of API and CLI calls.
	Token string
	// Hostname is --hostname; "" leaves the node's default.
	Hostname string
	Env      []string // added to the environment
	Args     []string // flags after the ones above
	// CLIBin runs the operator commands (CLI); "" is Bin. The upgrade test
	// keeps one CLI while the nodes change binaries.
	CLIBin string

	// Wrap, when set, returns the command line that runs argv, the node's
	// or a CLI call's: "ip netns exec NS argv...", say.
	Wrap func(argv []string) []string
	// Spawn, when set, starts cmd instead of cmd.Start.
	Spawn func(cmd *exec.Cmd) error
	// DialContext, when set, opens connections to the node's addresses.
	DialContext func(ctx context.Context, network, addr string) (net.Conn, error)
	// SysProcAttr is the process's; Detached gives a program's nodes.
	SysProcAttr *syscall.SysProcAttr
	// MarkLaunches writes a line to the log before each launch, so that
	// restarts show in it.
	MarkLaunches bool

	mu       sync.Mutex
	run      *Run
	launches int
	client   *http.Client
}

// Detached is the SysProcAttr of a program's nodes: their own process
// group, so Ctrl-C reaches only the program, which stops them in order;
// and SIGKILL if the program dies first.
func Detached() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}

// Run is one launch of a node: its process, until it exits.
type Run struct {
	cmd      *exec.Cmd
	done     chan struct{}
	err      error
	started  time.Time
	logStart int64
}

// Done is closed when the process has exited.
func (r *Run) Done() <-chan struct{} { return r.done }

// Err is how the process ended, once Done is closed.
func (r *Run) Err() error {
	<-r.done
	return r.err
}

// PID is the process ID.
func (r *Run) PID() int { return r.cmd.Process.Pid }

// Started is when the process was started.
func (r *Run) Started() time.Time { return r.started }

func (r *Run) exited() bool {
	select {
	case <-r.done:
		return true
	default:
		return false
	}
}

// Launch starts the process and returns at once; the data directory is
// made if missing and the log is appended to.
func (n *Node) Launch() (*Run, error) {
	if err := os.MkdirAll(n.DataDir, 0o700); err != nil {
		return nil, err
	}
	if n.LogPath == "" {
		n.LogPath = filepath.Join(n.DataDir, "node.log")
	}
	logf, err := os.OpenFile(n.LogPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		return nil, err
	}
	defer logf.Close() // the child has its own copy
	n.mu.Lock()
	n.launches++
	launch := n.launches
	n.mu.Unlock()
	if n.MarkLaunches {
		fmt.Fprintf(logf, "=== launch %d of %s at %s\n", launch, n.ID, time.Now().Format(time.RFC3339Nano))
	}
	r := &Run{done: make(chan struct{})}
	if fi, err := logf.Stat(); err == nil {
		r.logStart = fi.Size()
	}
	args := []string{"node", "--id", n.ID, "--data-dir", n.DataDir, "--smtp-addr", n.SMTP, "--http-addr", n.HTTP,
		"--raft-addr", n.Raft, "--gossip-addr", n.Gossip}
	if n.Hostname != "" {
		args = append(args, "--hostname", n.Hostname)
	}
	argv := n.wrap(append([]string{n.Bin}, append(args, n.Args...)...))
	r.cmd = exec.Command(argv[0], argv[1:]...)
	r.cmd.Env = append(append(os.Environ(), "LIFELINE_ADMIN_TOKEN="+n.Token), n.Env...)
	r.cmd.Stdout, r.cmd.Stderr = logf, logf
	r.cmd.SysProcAttr = n.SysProcAttr
	if n.Spawn != nil {
		err = n.Spawn(r.cmd)
	} else {
		err = r.cmd.Start()
	}
	if err != nil {
		return nil, err
	}
	r.started = time.Now()
	go func() {
		r.err = r.cmd.Wait()
		close(r.done)
	}()
	n.mu.Lock()
	n.run = r
	n.mu.Unlock()
	return r, nil
}

func (n *Node) wrap(argv []string) []string {
	if n.Wrap != nil {
		return n.Wrap(argv)
	}
	return argv
}

// Current is the latest launch, or nil before the first.
func (n *Node) Current() *Run {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.run
}

// Running reports whether the latest launch is still alive.
func (n *Node) Running() bool {
	r := n.Current()
	return r != nil && !r.exited()
}

// ExitErr is non-nil once the latest launch has ended, and says how.
func (n *Node) ExitErr() error {
	r := n.Current()
	if r == nil || !r.exited() {
		return nil
	}
	return fmt.Errorf("%s exited: %v%s", n.ID, r.err, n.LogTail(30))
}

// Signal sends sig to the running process.
func (n *Node) Signal(sig os.Signal) error {
	r := n.Current()
	if r == nil || r.exited() {
		return errors.New("not running")
	}
	return r.cmd.Process.Signal(sig)
}

// Kill ends the process with SIGKILL, as a crash would, and waits for it.
func (n *Node) Kill() {
	if r := n.Current(); r != nil && !r.exited() {
		r.cmd.Process.Signal(syscall.SIGKILL)
		<-r.done
	}
}

// Stop ends the process with SIGTERM, as systemd does, and kills it if it
// has not gone within grace; it reports whether it went by itself.
func (n *Node) Stop(grace time.Duration) bool {
	r := n.Current()
	if r == nil || r.exited() {
		return true
	}
	r.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-r.done:
		return true
	case <-time.After(grace):
		r.cmd.Process.Kill()
		<-r.done
		return false
	}
}

// ExitedOnBusyPort reports whether the latest launch ended because a port
// picked for it was taken meanwhile by another process on the machine.
func (n *Node) ExitedOnBusyPort() bool {
	r := n.Current()
	if r == nil || !r.exited() {
		return false
	}
	b, _ := os.ReadFile(n.LogPath)
	if int64(len(b)) < r.logStart {
		return false
	}
	return strings.Contains(string(b[r.logStart:]), "address already in use")
}

// WaitHealthy waits until the node can take mail (/healthz 200) and its
// API accepts the operator token (the leader stores the token just after
// its election). It gives up at once if the process exits. It asks for
// the domains rather than the status, which would count the spool and
// keep that count for a few seconds.
func (n *Node) WaitHealthy(ctx context.Context, limit time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	last := "no answer"
	return Poll(ctx, 50*time.Millisecond, func() string { return n.ID + " healthy: " + last }, func() (bool, error) {
		if r := n.Current(); r != nil && r.exited() {
			return false, fmt.Errorf("%s exited while starting: %v", n.ID, r.err)
		}
		actx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err := n.API(actx, http.MethodGet, "/api/v1/domains", nil, nil)
		cancel()
		if err != nil {
			last = "/api/v1/domains: " + err.Error()
			return false, nil
		}
		code, h, err := n.Health(ctx)
		if err != nil || code != http.StatusOK {
			last = fmt.Sprintf("/healthz: %d %s %v", code, h.Error, err)
			return false, nil
		}
		return true, nil
	})
}

// CLI runs `lifeline ARGS...` against the node, as an operator on its
// host would, and returns what it printed on stdout; the error carries
// stderr.
func (n *Node) CLI(ctx context.Context, args ...string) (string, error) {
	bin := n.CLIBin
	if bin == "" {
		bin = n.Bin
	}
	argv := n.wrap(append([]string{bin}, args...))
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), "LIFELINE_SERVER=http://"+n.HTTP, "LIFELINE_TOKEN="+n.Token)
	var out, errb strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return out.String(), &CLIError{Err: err, Stderr: errb.String()}
	}
	return out.String(), nil
}

// CLIError is a CLI call that failed: how it ended, and what it said on
// stderr.
type CLIError struct {
	Err    error
	Stderr string
}

func (e *CLIError) Error() string { return fmt.Sprintf("%v: %s", e.Err, e.Stderr) }

func (e *CLIError) Unwrap() error { return e.Err }

// LogTail is the last lines of the node's log, framed for an error
// message; "" when there is none.
func (n *Node) LogTail(lines int) string {
	return FileTail(n.LogPath, lines, n.ID+" log")
}

// FileTail is the last lines of a file, framed for an error message; ""
// when the file is missing or empty.
func FileTail(path string, lines int, what string) string {
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

// tailBytes is the last n bytes of a file.
func tailBytes(path string, n int64) []byte {
	f, err := os.Open(path)
	if err != nil {
		return nil
	}
	defer f.Close()
	if fi, err := f.Stat(); err == nil && fi.Size() > n {
		f.Seek(-n, io.SeekEnd)
	}
	b, _ := io.ReadAll(f)
	return b
}
