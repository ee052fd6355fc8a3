package kit

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// SinkBinary finds Postfix's smtp-sink.
func SinkBinary() (string, error) {
	if p, err := exec.LookPath("smtp-sink"); err == nil {
		return p, nil
	}
	for _, p := range []string{"/usr/sbin/smtp-sink", "/usr/lib/postfix/sbin/smtp-sink"} {
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	return "", errors.New("smtp-sink not found: it ships with Debian's postfix package (.ci/run installs it)")
}

// Sink is Postfix's smtp-sink: a real SMTP server that takes every
// message, standing for the customer's mail server.
type Sink struct {
	Addr string
	// Dir, when set, receives every message as a file of its own
	// (smtp-sink -d); "" dumps nothing, for volume.
	Dir string
	// Count makes the sink print a running count of messages (-c), which
	// Received reads.
	Count bool
	// Backlog is the listen backlog; 0 is 256.
	Backlog int
	// Args are more options: "-w 1" answers DATA a second late, "-r RCPT"
	// refuses every recipient with a 4xx.
	Args []string
	// LogPath receives the sink's output unless Count reads it.
	LogPath string
	// Wrap, Spawn and DialContext are as for Node: where and how the sink runs
	// and is reached.
	Wrap        func(argv []string) []string
	Spawn       func(cmd *exec.Cmd) error
	DialContext func(ctx context.Context, network, addr string) (net.Conn, error)
	SysProcAttr *syscall.SysProcAttr

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{}
	stops  []time.Time
	msgs   atomic.Int64
}

// Start runs the sink and waits until it greets.
func (s *Sink) Start(ctx context.Context) error {
	bin, err := SinkBinary()
	if err != nil {
		return err
	}
	var args []string
	if s.Count {
		args = append(args, "-c")
	}
	if os.Geteuid() == 0 {
		// smtp-sink drops privileges only when told which user to be; it
		// opens nothing after the socket but its dumps, so root is fine.
		args = append(args, "-u", "root")
	}
	if s.Dir != "" {
		if err := os.MkdirAll(s.Dir, 0o700); err != nil {
			return err
		}
		args = append(args, "-d", filepath.Join(s.Dir, "msg."))
	}
	backlog := s.Backlog
	if backlog == 0 {
		backlog = 256
	}
	args = append(append(args, s.Args...), s.Addr, strconv.Itoa(backlog))
	argv := append([]string{bin}, args...)
	if s.Wrap != nil {
		argv = s.Wrap(argv)
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.SysProcAttr = s.SysProcAttr
	var counter io.ReadCloser
	if s.Count {
		if counter, err = cmd.StdoutPipe(); err != nil {
			return err
		}
	} else if s.LogPath != "" {
		f, err := os.OpenFile(s.LogPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
		if err != nil {
			return err
		}
		defer f.Close()
		cmd.Stdout, cmd.Stderr = f, f
	}
	if s.Spawn != nil {
		err = s.Spawn(cmd)
	} else {
		err = cmd.Start()
	}
	if err != nil {
		return err
	}
	exited := make(chan struct{})
	go func() {
		if counter != nil {
			// The pipe is read to its end before Wait closes it.
			s.readCounter(counter)
		}
		cmd.Wait()
		close(exited)
	}()
	s.mu.Lock()
	s.cmd, s.exited = cmd, exited
	s.mu.Unlock()
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-exited:
			cancel()
		case <-wctx.Done():
		}
	}()
	if err := (Dialer{DialContext: s.DialContext}).WaitGreeting(wctx, s.Addr, 10*time.Second); err != nil {
		select {
		case <-exited:
			return fmt.Errorf("smtp-sink on %s exited at start%s", s.Addr, FileTail(s.LogPath, 10, "smtp-sink output"))
		default:
		}
		s.Kill()
		return fmt.Errorf("smtp-sink: %w", err)
	}
	return nil
}

func (s *Sink) readCounter(r io.Reader) {
	br := bufio.NewReader(r)
	for {
		line, err := br.ReadString('\r')
		if n, ok := ParseSinkCounter(line); ok {
			s.msgs.Store(n)
		}
		if err != nil {
			return
		}
	}
}

// ParseSinkCounter reads the mesg= field of one line of smtp-sink -c.
func ParseSinkCounter(line string) (int64, bool) {
	for _, f := range strings.Fields(line) {
		if v, ok := strings.CutPrefix(f, "mesg="); ok {
			n, err := strconv.ParseInt(v, 10, 64)
			return n, err == nil
		}
	}
	return 0, false
}

// Received is how many messages the sink has counted (with Count).
func (s *Sink) Received() int64 { return s.msgs.Load() }

// Stop ends the sink with SIGTERM, as a server is shut down, kills it if
// it has not gone within 5 s, and waits.
func (s *Sink) Stop() {
	s.mu.Lock()
	cmd, exited := s.cmd, s.exited
	s.cmd = nil
	s.stops = append(s.stops, time.Now())
	s.mu.Unlock()
	if cmd == nil {
		return
	}
	cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-exited:
	case <-time.After(5 * time.Second):
		cmd.Process.Kill()
		<-exited
	}
}

// Kill ends the sink with SIGKILL and waits.
func (s *Sink) Kill() {
	s.mu.Lock()
	cmd, exited := s.cmd, s.exited
	s.cmd = nil
	s.mu.Unlock()
	if cmd != nil {
		cmd.Process.Kill()
		<-exited
	}
}

// StopTimes are the times Stop was called.
func (s *Sink) StopTimes() []time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]time.Time(nil), s.stops...)
}

// Messages returns each dumped message without the lines smtp-sink adds
// in front, in LF line endings, as smtp-sink stores them.
func (s *Sink) Messages() [][]byte {
	entries, _ := os.ReadDir(s.Dir)
	var out [][]byte
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(s.Dir, e.Name()))
		if err != nil {
			continue
		}
		// smtp-sink ends each dump with an empty line of its own.
		out = append(out, bytes.TrimSuffix(StripSinkHeaders(b), []byte("\n")))
	}
	return out
}

// StripSinkHeaders removes the X-* lines and the Received: field that
// smtp-sink puts in front of a dumped message.
func StripSinkHeaders(b []byte) []byte {
	lines := bytes.SplitAfter(b, []byte("\n"))
	i := 0
	for i < len(lines) && bytes.HasPrefix(lines[i], []byte("X-")) {
		i++
	}
	// smtp-sink's own Received: field and its folded lines.
	if i+1 < len(lines) && bytes.HasPrefix(lines[i], []byte("Received: ")) && bytes.Contains(lines[i+1], []byte("smtp-sink")) {
		i++
		for i < len(lines) && len(lines[i]) > 0 && (lines[i][0] == '\t' || lines[i][0] == ' ') {
			i++
		}
	}
	return bytes.Join(lines[i:], nil)
}

// StartSink runs smtp-sink on addr for a test, dumping every message into
// a directory of the test's, until the test ends; args are more options.
func StartSink(t testing.TB, addr string, args ...string) *Sink {
	t.Helper()
	s := &Sink{Addr: addr, Dir: t.TempDir(), Args: args}
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Kill)
	return s
}

// StartCountingSink runs smtp-sink on addr for a test without dumping
// anything, for volume.
func StartCountingSink(t testing.TB, addr string) *Sink {
	t.Helper()
	s := &Sink{Addr: addr, Count: true, Backlog: 1024}
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Kill)
	return s
}
