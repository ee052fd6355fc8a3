// Command scale measures Lifeline with a large spool (issue 4): three
// nodes as real processes on loopback take -messages messages for a
// domain whose server is down, every node writes a Raft snapshot, and a
// fourth node with an empty data directory joins, installs the snapshot
// and copies the message bodies. It reports the fill rate, the largest
// RSS of each node against the 300 MiB requirement, each node's data
// directory, the snapshot times and sizes, and how long the new node took
// to become a voter, to catch up with the state and to hold every body.
//
//	go run ./e2e/scale [-binary PATH] [-messages 100000] [-size 4096]
//	    [-sessions 20] [-timeout 30m] [-json] [-workdir /var/tmp] [-keep]
//	    [-rss-limit 300] [-flush [-flush-watch 1m]]
//
// With -flush, an operator's `lifeline admin queue flush` during the
// outage is part of the run: every spooled recipient becomes due at once.
//
// The exit status is 0 when every requirement holds, 1 when the run
// failed or a requirement was missed (the report is printed either way),
// 2 for bad flags. The node logs of a failed run are kept and their
// directory is printed.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"sync"
	"syscall"
	"time"

	"lifeline/e2e/kit"
)

const (
	scaleDomain = "scale.test"
	clusterSize = 3
)

type options struct {
	binary   string
	messages int
	size     int
	sessions int
	timeout  time.Duration
	json     bool
	workdir  string
	keep     bool
	limitMiB int

	flush      bool
	flushWatch time.Duration
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	var o options
	fs := flag.NewFlagSet("scale", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.binary, "binary", "", "lifeline binary (default: go build the module in the working directory)")
	fs.IntVar(&o.messages, "messages", 100000, "messages in the spool")
	fs.IntVar(&o.size, "size", 4096, "message size in bytes, headers included")
	fs.IntVar(&o.sessions, "sessions", 20, "parallel SMTP sessions, spread over the three nodes")
	fs.DurationVar(&o.timeout, "timeout", 30*time.Minute, "upper bound for the whole run")
	fs.BoolVar(&o.json, "json", false, "print the report as JSON")
	fs.StringVar(&o.workdir, "workdir", kit.DefaultWorkdir(), "where the data directories live; a local disk, not tmpfs")
	fs.BoolVar(&o.keep, "keep", false, "keep the data directories and logs after the run")
	fs.IntVar(&o.limitMiB, "rss-limit", 300, "the RSS each node must stay under, in MiB")
	fs.BoolVar(&o.flush, "flush", false, "before the join, run `lifeline admin queue flush` with the destination still down and watch the memory")
	fs.DurationVar(&o.flushWatch, "flush-watch", time.Minute, "how long to watch after -flush")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() > 0 || o.messages < 1 || o.sessions < 1 || o.size < 512 || o.timeout <= 0 || o.limitMiB < 1 {
		fmt.Fprintln(stderr, "scale: want -messages >= 1, -sessions >= 1, -size >= 512, -timeout > 0, -rss-limit >= 1 and no arguments")
		return 2
	}
	logf := func(format string, a ...any) {
		fmt.Fprintf(stderr, "scale: %s "+format+"\n", append([]any{time.Now().Format("15:04:05")}, a...)...)
	}

	ctx, stopSignals := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stopSignals()
	ctx, cancel := context.WithTimeoutCause(ctx, o.timeout, fmt.Errorf("-timeout %v reached", o.timeout))
	defer cancel()
	// Once the run is over a second Ctrl-C kills at once instead of being
	// swallowed while the (bounded) cleanup runs.
	context.AfterFunc(ctx, stopSignals)

	rep, err := scale(ctx, o, logf)
	if rep != nil {
		if o.json {
			kit.PrintJSON(stdout, rep)
		} else {
			rep.print(stdout)
		}
	}
	if err != nil {
		if ctx.Err() != nil {
			logf("stopped: %v", context.Cause(ctx))
		}
		logf("FAILED: %v", err)
		return 1
	}
	if !rep.Pass {
		logf("a requirement was missed: %v", rep.Problems)
		return 1
	}
	return 0
}

// scale sets up, measures and tears down; the report it returns holds
// whatever was measured, even when err says the run did not finish.
func scale(ctx context.Context, o options, logf func(string, ...any)) (rep *report, err error) {
	tmp, err := os.MkdirTemp(o.workdir, "lifeline-scale-")
	if err != nil {
		return nil, err
	}
	rep = &report{Messages: o.messages, Size: o.size, Sessions: o.sessions, LimitMiB: o.limitMiB, Workdir: tmp, CPUs: runtime.NumCPU()}
	if kit.OnTmpfs(tmp) {
		logf("warning: %s is on tmpfs; use -workdir on a disk", tmp)
		rep.Notes = append(rep.Notes, "work directory on tmpfs: fsync is free there")
	}
	c := &kit.Cluster{Key: kit.RandomHex(32), Token: kit.RandomHex(24)}
	defer func() {
		// Sizes and load at the end, whether or not the run got there.
		rep.LoadAvg = append(rep.LoadAvg, loadAvg())
		for _, n := range c.Nodes() {
			rep.node(n.ID).Data = dataDirSize(n.DataDir)
		}
		c.Stop()
		rep.Logs = scanLogs(c.Nodes())
		rep.finish()
		switch {
		case o.keep:
			logf("kept data directories and logs in %s", tmp)
		case err != nil || !rep.Pass:
			// Keep the logs of a failed run, not the bulky data.
			for _, n := range c.Nodes() {
				os.RemoveAll(n.DataDir)
			}
			os.RemoveAll(filepath.Join(tmp, "bin"))
			logf("node logs kept in %s", tmp)
			rep.LogsKeptIn = tmp
		default:
			os.RemoveAll(tmp)
		}
	}()

	bin := o.binary
	if bin == "" {
		logf("building lifeline")
		if bin, err = kit.Build(ctx, filepath.Join(tmp, "bin")); err != nil {
			return rep, err
		}
	}
	rep.Binary = bin

	s := newSampler(c.Nodes, int64(o.limitMiB)<<20, logf)
	m := &measurement{o: o, c: c, s: s, rep: rep, logf: logf, tmp: tmp, bin: bin}
	sctx, stopSampler := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var leaderMu sync.Mutex
	wg.Go(func() { s.run(sctx) })
	wg.Go(func() {
		founders := func() []*kit.Node {
			var out []*kit.Node
			for _, n := range c.Nodes() {
				if n.ID != "n4" {
					out = append(out, n)
				}
			}
			return out
		}
		watchLeader(sctx, founders, s, time.Now(), logf, &rep.Leaders, &leaderMu)
	})
	defer func() {
		stopSampler()
		wg.Wait()
		rep.memory(c.Nodes(), s)
	}()

	err = m.run(ctx)
	// A node that died is the news, whatever else went wrong.
	if cerr := c.Crashed(); cerr != nil {
		err = errors.Join(err, cerr)
	}
	if err != nil {
		rep.Error = err.Error()
	}
	return rep, err
}
