package main

import (
	"flag"
	"io"
	"testing"
	"time"

	"lifeline/node"
)

// The MX connection flags take their defaults and refuse nonsense with a
// clear error before anything starts.
func TestNodeConnectionFlags(t *testing.T) {
	parse := func(args ...string) (node.Config, error) {
		fs := flag.NewFlagSet("lifeline node", flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		f := newNodeFlags(fs)
		if err := fs.Parse(args); err != nil {
			return node.Config{}, err
		}
		return f.finish(fs, io.Discard)
	}
	cfg, err := parse()
	if err != nil {
		t.Fatal(err)
	}
	if cfg.MaxConnections != 1000 || cfg.MaxClientConnections != 50 || cfg.IdleTimeout != 5*time.Minute ||
		cfg.StressIdleTimeout != 10*time.Second || cfg.Postmaster != "" {
		t.Fatalf("defaults: %+v", cfg)
	}
	cfg, err = parse("--max-client-connections", "5", "--stress-idle-timeout", "2s", "--postmaster", `"mail admin"@example.net`)
	if err != nil || cfg.MaxClientConnections != 5 || cfg.StressIdleTimeout != 2*time.Second || cfg.Postmaster != `"mail admin"@example.net` {
		t.Fatalf("set: %+v, %v", cfg, err)
	}
	for _, bad := range [][]string{{"--max-connections", "0"}, {"--max-client-connections", "-1"}, {"--idle-timeout", "0s"}} {
		if _, err := parse(bad...); err == nil {
			t.Errorf("%v accepted", bad)
		}
	}
}
