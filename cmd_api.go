package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"lifeline/webui/apiclient"
)

// apiFlags are the connection flags every API command shares.
type apiFlags struct {
	server string
	token  string
	json   bool
}

func (a *apiFlags) register(fs *flag.FlagSet, withJSON bool) {
	fs.StringVar(&a.server, "server", envOr("LIFELINE_SERVER", "http://127.0.0.1:8080"), "node URL (or LIFELINE_SERVER)")
	fs.StringVar(&a.token, "token", os.Getenv("LIFELINE_TOKEN"), "operator token (or LIFELINE_TOKEN)")
	if withJSON {
		fs.BoolVar(&a.json, "json", false, "print JSON")
	}
}

// apiCommand starts the flags of a command that talks to a node's API:
// "lifeline "+name, with --server and --token (and --json if asked for).
func apiCommand(name string, stderr io.Writer, withJSON bool) (*flag.FlagSet, *apiFlags) {
	fs := flag.NewFlagSet("lifeline "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	a := &apiFlags{}
	a.register(fs, withJSON)
	return fs, a
}

func (a *apiFlags) client() *apiclient.Client { return apiclient.New(a.server, a.token) }

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

// parseInterleaved parses flags that may come before or after positional
// arguments, as operators type them: `domain add NAME --destination X`.
func parseInterleaved(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, errUsage
		}
		args = fs.Args()
		if len(args) == 0 {
			return pos, nil
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
}

func oneName(fs *flag.FlagSet, args []string, what string) (string, error) {
	pos, err := parseInterleaved(fs, args)
	if err != nil {
		return "", err
	}
	if len(pos) != 1 {
		return "", fmt.Errorf("want exactly one %s", what)
	}
	return pos[0], nil
}

// multiFlag collects a repeatable flag (--org A --org B).
type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, ",") }
func (m *multiFlag) Set(v string) error { *m = append(*m, v); return nil }

// readPasswordFile reads a password from a file ("-" for standard input),
// without its trailing newline: passwords never go on a command line,
// where other users could see them in the process list.
func readPasswordFile(path string) (string, error) {
	if path == "" {
		return "", errors.New("--password-file FILE is required")
	}
	var b []byte
	var err error
	if path == "-" {
		b, err = io.ReadAll(io.LimitReader(os.Stdin, 4096))
	} else {
		b, err = os.ReadFile(path)
	}
	if err != nil {
		return "", err
	}
	return strings.TrimRight(string(b), "\r\n"), nil
}

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func ctx30() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), 30*time.Second)
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
