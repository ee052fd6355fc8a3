package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"lifeline/e2e/kit"
)

const (
	postfixBin  = "/usr/sbin/postfix"
	postconfBin = "/usr/sbin/postconf"
	// postqueueBin is set-gid postdrop; the drain measurement flushes
	// the queue with it.
	postqueueBin = "/usr/sbin/postqueue"
	postfixHint  = "DEBIAN_FRONTEND=noninteractive apt-get install -y postfix"
)

// postfixSkipReason says why the Postfix half cannot run here, or "".
func postfixSkipReason() string {
	for _, p := range []string{postfixBin, postconfBin, postqueueBin} {
		if _, err := os.Stat(p); err != nil {
			return fmt.Sprintf("%s not found; install Debian's Postfix with: apt-get update && "+
				"echo 'postfix postfix/main_mailer_type select No configuration' | debconf-set-selections && %s", p, postfixHint)
		}
	}
	if os.Geteuid() != 0 {
		return "Postfix's master must be started as root; run the benchmark as root for the comparison"
	}
	return ""
}

// postfixInstance is a private Postfix instance in a temporary directory:
// its own configuration, queue and data, listening on loopback only. The
// machine's default instance is touched only to register this one.
type postfixInstance struct {
	root     string
	confDir  string
	queueDir string
	dataDir  string
	logFile  string
	addr     string

	// The default instance's main.cf as it was before we registered, so it
	// can be put back byte for byte.
	defaultMainCf string
	origMainCf    []byte
	hadMainCf     bool
	registered    bool
	startTried    bool
}

func newPostfixInstance(root, addr string) *postfixInstance {
	return &postfixInstance{
		root:     root,
		confDir:  filepath.Join(root, "etc"),
		queueDir: filepath.Join(root, "spool"),
		dataDir:  filepath.Join(root, "data"),
		logFile:  filepath.Join(root, "log", "postfix.log"),
		addr:     addr,
	}
}

// postfixEnv drops MAIL_CONFIG so that "the default instance" means the
// compiled-in one, whatever the caller's shell has set.
func postfixEnv() []string {
	var env []string
	for _, e := range os.Environ() {
		if !strings.HasPrefix(e, "MAIL_CONFIG=") {
			env = append(env, e)
		}
	}
	return env
}

func postfixCmd(ctx context.Context, name string, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = postfixEnv()
	out, err := cmd.CombinedOutput()
	if err != nil {
		return out, fmt.Errorf("%s %s: %w: %s", filepath.Base(name), strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return out, nil
}

// postconfDefault reads a parameter's compiled-in default, which is what
// the Debian package ships.
func postconfDefault(ctx context.Context, param string) (string, error) {
	out, err := postfixCmd(ctx, postconfBin, "-d", "-h", param)
	return strings.TrimSpace(string(out)), err
}

// setup writes the instance's configuration and registers it with the
// default instance. deadAddr is where the test domain is relayed: nothing
// listens there, so every message stays queued, as with Lifeline.
func (p *postfixInstance) setup(ctx context.Context, deadAddr string, sessions int) error {
	mailOwner, err := postconfDefault(ctx, "mail_owner")
	if err != nil {
		return err
	}
	setgidGroup, err := postconfDefault(ctx, "setgid_group")
	if err != nil {
		return err
	}
	defaultConf, err := postconfDefault(ctx, "config_directory")
	if err != nil {
		return err
	}
	owner, err := user.Lookup(mailOwner)
	if err != nil {
		return fmt.Errorf("postfix mail_owner: %w (is the postfix package installed completely?)", err)
	}
	if _, err := user.LookupGroup(setgidGroup); err != nil {
		return fmt.Errorf("postfix setgid_group: %w", err)
	}

	for _, d := range []string{p.confDir, p.queueDir, p.dataDir, filepath.Dir(p.logFile)} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
	}
	// Daemons running as mail_owner reach these by absolute path.
	for _, d := range []string{p.root, p.confDir, p.queueDir, filepath.Dir(p.logFile)} {
		if err := os.Chmod(d, 0o755); err != nil {
			return err
		}
	}
	// master takes its lock in data_directory after dropping privileges.
	uid, _ := strconv.Atoi(owner.Uid)
	gid, _ := strconv.Atoi(owner.Gid)
	if err := os.Chown(p.dataDir, uid, gid); err != nil {
		return err
	}

	master, err := p.masterCf(defaultConf)
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(p.confDir, "master.cf"), master, 0o644); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(p.confDir, "main.cf"), p.mainCf(deadAddr, sessions, mailOwner, setgidGroup), 0o644); err != nil {
		return err
	}
	if err := p.register(ctx, defaultConf); err != nil {
		return err
	}
	if _, err := postfixCmd(ctx, postfixBin, "-c", p.confDir, "check"); err != nil {
		return fmt.Errorf("%w%s", err, p.logTail())
	}
	return nil
}

// mainCf is a complete main.cf rather than an edited copy of the machine's,
// so the result does not depend on what an operator put there. Everything
// not named keeps Postfix's default, fsync of queue files included.
func (p *postfixInstance) mainCf(deadAddr string, sessions int, mailOwner, setgidGroup string) []byte {
	host, port, _ := strings.Cut(deadAddr, ":")
	lines := []string{
		"# Private benchmark instance written by lifeline e2e/bench; removed after the run.",
		"compatibility_level = 3.6",
		"queue_directory = " + p.queueDir,
		"data_directory = " + p.dataDir,
		"mail_owner = " + mailOwner,
		"setgid_group = " + setgidGroup,
		// No syslog here: without a log file, fatal errors go nowhere.
		"maillog_file_prefixes = /var, /dev/stdout, " + filepath.Dir(p.logFile),
		"maillog_file = " + p.logFile,
		"myhostname = postfix.bench.invalid",
		"mydomain = bench.invalid",
		"myorigin = $myhostname",
		"inet_interfaces = 127.0.0.1",
		"inet_protocols = ipv4",
		"mydestination =",
		"mynetworks = 127.0.0.0/8",
		"relay_domains = bench.test",
		"transport_maps = inline:{ bench.test=smtp:[" + host + "]:" + port + " }",
		"smtp_dns_support_level = disabled",
		"disable_dns_lookups = yes",
		// Lifeline does not look up the client's name either.
		"smtpd_peername_lookup = no",
		"smtpd_client_restrictions =",
		"smtpd_relay_restrictions = permit_auth_destination, reject",
		"smtpd_recipient_restrictions = permit_auth_destination, reject",
		"smtpd_banner = $myhostname ESMTP",
		"message_size_limit = 52428800",
		fmt.Sprintf("default_process_limit = %d", max(100, sessions+10)),
		"smtpd_client_connection_count_limit = 0",
		"smtpd_client_connection_rate_limit = 0",
		"smtpd_client_message_rate_limit = 0",
		"smtpd_client_recipient_rate_limit = 0",
		"smtpd_client_new_tls_session_rate_limit = 0",
		"smtpd_client_auth_rate_limit = 0",
		"alias_maps =",
		"alias_database =",
		"biff = no",
		"append_dot_mydomain = no",
		"readme_directory = no",
	}
	return []byte(strings.Join(lines, "\n") + "\n")
}

// masterCf takes the package's master.cf and changes only what a private
// loopback instance needs: the smtpd listener's address, and no chroot
// (a chroot would need copies of system files inside the temp queue).
func (p *postfixInstance) masterCf(defaultConf string) ([]byte, error) {
	var src []byte
	var err error
	for _, f := range []string{"/usr/share/postfix/master.cf.dist", filepath.Join(defaultConf, "master.cf")} {
		if src, err = os.ReadFile(f); err == nil {
			break
		}
	}
	if err != nil {
		return nil, fmt.Errorf("postfix master.cf: %w", err)
	}
	var out []string
	listeners := 0
	for _, line := range strings.Split(string(src), "\n") {
		f := strings.Fields(line)
		if line == "" || line[0] == '#' || line[0] == ' ' || line[0] == '\t' || len(f) < 8 {
			out = append(out, line)
			continue
		}
		if f[0] == "smtp" && f[1] == "inet" {
			f[0] = p.addr
			listeners++
		}
		f[4] = "n"
		out = append(out, strings.Join(f, "  "))
	}
	if listeners != 1 {
		return nil, fmt.Errorf("postfix master.cf: want one smtp inet service, found %d", listeners)
	}
	return []byte(strings.Join(out, "\n")), nil
}

// register lists the instance in the default instance's
// alternate_config_directories; Postfix's set-gid programs refuse a
// configuration directory that is not listed there.
func (p *postfixInstance) register(ctx context.Context, defaultConf string) error {
	p.defaultMainCf = filepath.Join(defaultConf, "main.cf")
	orig, err := os.ReadFile(p.defaultMainCf)
	switch {
	case err == nil:
		p.origMainCf, p.hadMainCf = orig, true
	case errors.Is(err, os.ErrNotExist):
		// "No configuration" installs ship no main.cf, and postconf -e
		// will not create one.
		if err := os.WriteFile(p.defaultMainCf, nil, 0o644); err != nil {
			return err
		}
	default:
		return err
	}
	p.registered = true
	out, err := postfixCmd(ctx, postconfBin, "-h", "alternate_config_directories")
	if err != nil {
		return err
	}
	dirs := strings.TrimSpace(string(out))
	if dirs != "" {
		dirs += ", "
	}
	_, err = postfixCmd(ctx, postconfBin, "-e", "alternate_config_directories = "+dirs+p.confDir)
	return err
}

// unregister puts the default main.cf back exactly as it was.
func (p *postfixInstance) unregister() error {
	if !p.registered {
		return nil
	}
	p.registered = false
	if !p.hadMainCf {
		return os.Remove(p.defaultMainCf)
	}
	return os.WriteFile(p.defaultMainCf, p.origMainCf, 0o644)
}

// start brings the instance up and waits until smtpd greets.
func (p *postfixInstance) start(ctx context.Context) error {
	p.startTried = true
	// A start cut off half way could leave a master that nobody stops, so
	// the start itself is not cancelled; it is bounded on its own.
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 60*time.Second)
	defer cancel()
	if _, err := postfixCmd(sctx, postfixBin, "-c", p.confDir, "start"); err != nil {
		return fmt.Errorf("%w%s", err, p.logTail())
	}
	if err := kit.WaitGreeting(ctx, p.addr, 30*time.Second); err != nil {
		return fmt.Errorf("postfix smtpd on %s: %w%s", p.addr, err, p.logTail())
	}
	return nil
}

// close stops the instance if it may have started, waits for its master
// to exit, and unregisters it. It is safe to call more than once.
func (p *postfixInstance) close() error {
	var errs []error
	if p.startTried {
		p.startTried = false
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		pid := p.masterPID()
		if _, err := postfixCmd(ctx, postfixBin, "-c", p.confDir, "stop"); err != nil && pid > 0 {
			errs = append(errs, err)
		}
		if pid > 0 {
			errs = append(errs, waitExit(ctx, pid))
		}
	}
	errs = append(errs, p.unregister())
	return errors.Join(errs...)
}

func (p *postfixInstance) masterPID() int {
	b, err := os.ReadFile(filepath.Join(p.queueDir, "pid", "master.pid"))
	if err != nil {
		return 0
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	return pid
}

// waitExit polls until pid is gone; "postfix stop" returns before master
// has finished, and the temp directory must not vanish under it. A master
// that ignores the stop is killed.
func waitExit(ctx context.Context, pid int) error {
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) || isZombie(pid) {
			return nil
		}
		select {
		case <-ctx.Done():
			syscall.Kill(pid, syscall.SIGKILL)
			return fmt.Errorf("postfix master %d did not stop in time; killed", pid)
		case <-tick.C:
		}
	}
}

// isZombie tells an exited process that nobody has reaped yet (master is
// re-parented to init, which in a container may be slow to reap) from a
// live one.
func isZombie(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// The state follows the parenthesised command name, which may itself
	// contain parentheses.
	i := bytes.LastIndexByte(b, ')')
	return i >= 0 && i+2 < len(b) && b[i+2] == 'Z'
}

func (p *postfixInstance) logTail() string {
	return kit.FileTail(p.logFile, 20, "postfix log")
}
