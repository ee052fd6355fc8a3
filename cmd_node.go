package main

import (
	"bufio"
	"crypto/tls"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"runtime/debug"
	"runtime/pprof"
	"strconv"
	"strings"
	"syscall"
	"time"

	"lifeline/cluster"
	"lifeline/node"
	"lifeline/webui"
)

// webHandler is what a node serves on its HTTP listener besides /healthz:
// the people's pages and the JSON API, over the node.
func webHandler(n *node.Node, logger *slog.Logger) http.Handler { return webui.New(n, logger) }

// The node is the web side's backend.
var _ webui.Backend = (*node.Node)(nil)

// listFlag is a repeatable or comma-separated flag.
type listFlag []string

func (l *listFlag) String() string { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error {
	for _, p := range strings.Split(v, ",") {
		if p = strings.TrimSpace(p); p != "" {
			*l = append(*l, p)
		}
	}
	return nil
}

// sizeFlag parses sizes such as 50MiB, 10MB, 4096.
type sizeFlag int64

func (s *sizeFlag) String() string { return strconv.FormatInt(int64(*s), 10) }
func (s *sizeFlag) Set(v string) error {
	n, err := parseSize(v)
	*s = sizeFlag(n)
	return err
}

func parseSize(v string) (int64, error) {
	v = strings.TrimSpace(v)
	units := []struct {
		suffix string
		mult   int64
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"KB", 1000}, {"MB", 1000 * 1000}, {"GB", 1000 * 1000 * 1000}, {"K", 1 << 10}, {"M", 1 << 20}, {"G", 1 << 30}, {"B", 1}}
	mult := int64(1)
	for _, u := range units {
		if strings.HasSuffix(v, u.suffix) {
			v, mult = strings.TrimSpace(strings.TrimSuffix(v, u.suffix)), u.mult
			break
		}
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n <= 0 {
		return 0, fmt.Errorf("invalid size %q", v)
	}
	return n * mult, nil
}

// scheduleFlag is a comma-separated list of retry intervals.
type scheduleFlag []time.Duration

func (s *scheduleFlag) String() string {
	var parts []string
	for _, d := range *s {
		parts = append(parts, d.String())
	}
	return strings.Join(parts, ",")
}
func (s *scheduleFlag) Set(v string) error {
	*s = nil
	for _, p := range strings.Split(v, ",") {
		d, err := time.ParseDuration(strings.TrimSpace(p))
		if err != nil || d <= 0 {
			return fmt.Errorf("invalid interval %q", p)
		}
		*s = append(*s, d)
	}
	return nil
}

type nodeFlags struct {
	cfg            node.Config
	join           listFlag
	transports     listFlag
	maxSize        sizeFlag
	minFree        sizeFlag
	schedule       scheduleFlag
	configFile     string
	adminTokenFile string
	tlsCert        string
	tlsKey         string
	logLevel       string
	clusterKeyFile string
}

func newNodeFlags(fs *flag.FlagSet) *nodeFlags {
	f := &nodeFlags{maxSize: 50 << 20, schedule: scheduleFlag{5 * time.Minute, 10 * time.Minute, 20 * time.Minute, 40 * time.Minute, time.Hour}}
	host, _ := os.Hostname()
	fs.StringVar(&f.cfg.ID, "id", host, "Raft server ID")
	fs.StringVar(&f.cfg.DataDir, "data-dir", "/var/lib/lifeline", "all state of this node")
	fs.StringVar(&f.cfg.SMTPAddr, "smtp-addr", ":25", "MX listener")
	fs.StringVar(&f.cfg.HTTPAddr, "http-addr", ":8080", "web UI, JSON API, /metrics, /healthz")
	fs.StringVar(&f.cfg.RaftAddr, "raft-addr", ":7000", "Raft and cluster RPC")
	fs.StringVar(&f.cfg.GossipAddr, "gossip-addr", ":7946", "memberlist")
	fs.Var(&f.join, "join", "gossip addresses of peers (repeatable or comma-separated)")
	fs.IntVar(&f.cfg.BootstrapExpect, "bootstrap-expect", 1, "form the cluster once N nodes see each other")
	fs.StringVar(&f.configFile, "config", "", "read the same settings from FILE; flags win")
	fs.StringVar(&f.adminTokenFile, "admin-token-file", "", "operator token for a new cluster (or LIFELINE_ADMIN_TOKEN)")
	fs.StringVar(&f.cfg.Hostname, "hostname", "", "name in SMTP greetings and Received: (default: the ID)")
	fs.StringVar(&f.tlsCert, "tls-cert", "", "PEM certificate for STARTTLS")
	fs.StringVar(&f.tlsKey, "tls-key", "", "PEM key for STARTTLS")
	fs.Var(&f.schedule, "retry-schedule", "retry intervals; the last repeats (default 5m,10m,20m,40m,1h)")
	fs.DurationVar(&f.cfg.DelayWarning, "delay-warning", 4*time.Hour, "send a delayed DSN after this long")
	fs.DurationVar(&f.cfg.QueueLifetime, "queue-lifetime", 720*time.Hour, "bounce with a failed DSN after this long")
	fs.Var(&f.maxSize, "max-message-size", "largest message accepted (default 50MiB)")
	fs.Var(&f.minFree, "min-free-space", "below this much free space in the data dir, refuse new mail with 452 and report unhealthy (default 1.5 x max-message-size)")
	fs.IntVar(&f.cfg.MaxRecipients, "max-recipients", 1000, "most recipients per message")
	fs.IntVar(&f.cfg.MaxConnections, "max-connections", 1000, "most concurrent MX sessions; more are refused with 421")
	fs.IntVar(&f.cfg.MaxClientConnections, "max-client-connections", 50, "most concurrent MX sessions from one client address")
	fs.DurationVar(&f.cfg.IdleTimeout, "idle-timeout", 5*time.Minute, "how long an MX session may wait between commands")
	fs.DurationVar(&f.cfg.StressIdleTimeout, "stress-idle-timeout", 10*time.Second, "the same while more than 80% of --max-connections are in use")
	fs.StringVar(&f.cfg.Postmaster, "postmaster", "", "mailbox for mail to the bare <postmaster> (default: postmaster@ the first protected domain)")
	fs.Var(&f.transports, "transport", "DOMAIN=HOST:PORT route; repeatable; * is a smarthost")
	fs.StringVar(&f.logLevel, "log-level", "info", "debug, info, warn or error")
	fs.StringVar(&f.clusterKeyFile, "cluster-key-file", "", "32-byte key, hex or base64, shared by all nodes (or LIFELINE_CLUSTER_KEY)")
	fs.DurationVar(&f.cfg.DeliveryLease, "delivery-lease", 10*time.Minute, "how long a delivery attempt may run before a new leader retries it")
	fs.DurationVar(&f.cfg.RemoveFailedAfter, "remove-failed-after", 72*time.Hour, "remove a failed node from the voters after this long (0: never)")
	fs.DurationVar(&f.cfg.LogRetention, "log-retention", 30*24*time.Hour, "keep message log entries this long")
	fs.IntVar(&f.cfg.LogMaxEntries, "log-max-entries", 5_000_000, "keep at most this many message log entries per node")
	return f
}

// applyConfigFile sets, from a file of `key = value` lines whose keys are
// the flag names, every flag the command line did not set.
func applyConfigFile(fs *flag.FlagSet, path string) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	sc := bufio.NewScanner(strings.NewReader(string(data)))
	for line := 1; sc.Scan(); line++ {
		text := strings.TrimSpace(sc.Text())
		if text == "" || strings.HasPrefix(text, "#") {
			continue
		}
		key, val, ok := strings.Cut(text, "=")
		if !ok {
			return fmt.Errorf("%s:%d: want key = value", path, line)
		}
		key, val = strings.TrimSpace(key), strings.Trim(strings.TrimSpace(val), `"`)
		if fs.Lookup(key) == nil || key == "config" {
			return fmt.Errorf("%s:%d: unknown setting %q", path, line, key)
		}
		if set[key] {
			continue
		}
		if err := fs.Set(key, val); err != nil {
			return fmt.Errorf("%s:%d: %s: %v", path, line, key, err)
		}
	}
	return nil
}

func (f *nodeFlags) finish(fs *flag.FlagSet, stderr io.Writer) (node.Config, error) {
	if f.configFile != "" {
		if err := applyConfigFile(fs, f.configFile); err != nil {
			return node.Config{}, err
		}
	}
	cfg := f.cfg
	cfg.Web = webHandler
	cfg.Join = f.join
	cfg.MaxMessageSize = int64(f.maxSize)
	cfg.MinFreeSpace = int64(f.minFree)
	cfg.RetrySchedule = f.schedule
	if cfg.MaxConnections < 1 || cfg.MaxClientConnections < 1 {
		return cfg, fmt.Errorf("--max-connections and --max-client-connections must be at least 1")
	}
	if cfg.IdleTimeout <= 0 || cfg.StressIdleTimeout <= 0 {
		return cfg, fmt.Errorf("--idle-timeout and --stress-idle-timeout must be positive")
	}
	cfg.Transports = map[string]string{}
	for _, t := range f.transports {
		d, dest, ok := strings.Cut(t, "=")
		if !ok || d == "" || dest == "" {
			return cfg, fmt.Errorf("--transport wants DOMAIN=HOST:PORT, got %q", t)
		}
		cfg.Transports[strings.ToLower(d)] = dest
	}
	keyText := os.Getenv("LIFELINE_CLUSTER_KEY")
	if f.clusterKeyFile != "" {
		b, err := os.ReadFile(f.clusterKeyFile)
		if err != nil {
			return cfg, err
		}
		keyText = string(b)
	}
	if keyText != "" {
		key, err := cluster.ParseClusterKey(keyText)
		if err != nil {
			return cfg, err
		}
		cfg.ClusterKey = key
	}
	cfg.AdminToken = os.Getenv("LIFELINE_ADMIN_TOKEN")
	if f.adminTokenFile != "" {
		b, err := os.ReadFile(f.adminTokenFile)
		if err != nil {
			return cfg, err
		}
		cfg.AdminToken = strings.TrimSpace(string(b))
	}
	if f.tlsCert != "" || f.tlsKey != "" {
		cert, err := tls.LoadX509KeyPair(f.tlsCert, f.tlsKey)
		if err != nil {
			return cfg, fmt.Errorf("TLS certificate: %w", err)
		}
		cfg.TLS = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(f.logLevel)); err != nil {
		return cfg, fmt.Errorf("--log-level: %w", err)
	}
	cfg.Logger = slog.New(slog.NewJSONHandler(stderr, &slog.HandlerOptions{Level: level}))
	if level <= slog.LevelInfo {
		cfg.RaftLog = stderr
	}
	return cfg, nil
}

func runNode(args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("lifeline node", flag.ContinueOnError)
	fs.SetOutput(stderr)
	f := newNodeFlags(fs)
	if err := fs.Parse(args); err != nil {
		return errUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "lifeline node: unexpected argument %q\n", fs.Arg(0))
		return errUsage
	}
	cfg, err := f.finish(fs, stderr)
	if err != nil {
		return err
	}
	tuneGC()
	if path := os.Getenv("LIFELINE_CPUPROFILE"); path != "" {
		// For measuring the node under load (make bench); not a setting.
		// "{id}" becomes the node ID, so the nodes of one cluster started
		// with the same environment write separate profiles.
		f, err := os.Create(strings.ReplaceAll(path, "{id}", cfg.ID))
		if err != nil {
			return err
		}
		pprof.StartCPUProfile(f)
		defer pprof.StopCPUProfile()
	}
	if path := os.Getenv("LIFELINE_TEST_CLOCK_FILE"); path != "" {
		// Fault tests move this node's clock; not a setting for production.
		stop := make(chan struct{})
		defer close(stop)
		cfg.Now = node.FileSkewClock(path, stop)
		cfg.Logger.Warn("clock offset read from a test file", "file", path)
	}
	n, err := node.Start(cfg)
	if err != nil {
		return err
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	s := <-sig
	cfg.Logger.Info("shutting down", "signal", s.String())
	return n.Close()
}

// tuneGC trades memory for CPU where the operator has not chosen: a node's
// live heap is small (the spool lives in bbolt, not in Go objects), so
// collecting at 200% growth instead of 100% costs tens of MiB and gives
// about a tenth more mail per second on a busy node (make bench); the soft
// limit keeps the heap well inside an appliance's memory all the same.
func tuneGC() {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(200)
	}
	if os.Getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(192 << 20)
	}
}
