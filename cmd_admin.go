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
	"text/tabwriter"
	"time"

	"lifeline/fsm"
	"lifeline/webui/api"
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

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func ctx30() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), 30*time.Second)
}

func runStatus(args []string, stdout, stderr io.Writer) error {
	fs, a := apiCommand("status", stderr, true)
	if _, err := parseInterleaved(fs, args); err != nil {
		return err
	}
	ctx, cancel := ctx30()
	defer cancel()
	st, err := a.client().Status(ctx)
	if err != nil {
		return err
	}
	if a.json {
		return printJSON(stdout, st)
	}
	c := st.Cluster
	health := "healthy"
	if !st.Healthy {
		health = "UNHEALTHY: " + st.Problem
	}
	fmt.Fprintf(stdout, "node %s is %s (%s)\nleader %s  term %d  commit %d  applied %d\n\n",
		c.ID, strings.ToLower(c.State), health, orDash(c.LeaderID), c.Term, c.CommitIndex, c.AppliedIndex)
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tADDRESS\tROLE\tSUFFRAGE")
	for _, s := range c.Servers {
		role := "follower"
		if s.Leader {
			role = "leader"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", s.ID, s.Address, role, s.Suffrage)
	}
	tw.Flush()
	fmt.Fprintf(stdout, "\nqueue: %d messages, %d bytes", st.Queue.Messages, st.Queue.Bytes)
	if st.Queue.OldestReceived != 0 {
		fmt.Fprintf(stdout, ", oldest %s", time.Unix(0, st.Queue.OldestReceived).UTC().Format(time.RFC3339))
	}
	fmt.Fprintln(stdout)
	for d, n := range st.Queue.ByDomain {
		fmt.Fprintf(stdout, "  %s: %d\n", d, n)
	}
	return nil
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

const adminUsage = `usage:
  lifeline admin domain add NAME --destination HOST:PORT [--destination ...] [--org ORG]
  lifeline admin domain set NAME --destination HOST:PORT [--destination ...] [--org ORG]
  lifeline admin domain remove NAME
  lifeline admin domain list [--json]
  lifeline admin queue list [--domain D] [--sender S] [--recipient R]
                           [--state held|deferred|new] [--older-than 4h] [--newer-than 30m] [--json]
  lifeline admin queue show ID [--json]
  lifeline admin queue flush
  lifeline admin queue hold|release|retry ID
  lifeline admin queue delete ID [--dsn]
  lifeline admin cluster transfer [--to ID]
  lifeline admin cluster remove ID
  lifeline admin cluster snapshot
  lifeline admin log search [--id ID] [--sender A] [--recipient A] [--status S]
                            [--since 2h] [--until TIME] [--limit N] [--json|--csv]
`

func runAdmin(args []string, stdout, stderr io.Writer) error {
	if ok, err := runConsole(args, stdout, stderr); ok {
		return err
	}
	if ok, err := runAccounts(args, stdout, stderr); ok {
		return err
	}
	if len(args) < 2 {
		fmt.Fprint(stderr, adminUsage+accountsUsage+consoleUsage)
		return errUsage
	}
	switch args[0] + " " + args[1] {
	case "domain add", "domain set":
		return adminDomainPut(args[1] == "add", args[2:], stdout, stderr)
	case "domain remove":
		return adminDomainRemove(args[2:], stdout, stderr)
	case "domain list":
		return adminDomainList(args[2:], stdout, stderr)
	case "queue list":
		return adminQueueList(args[2:], stdout, stderr)
	case "queue show":
		return adminQueueShow(args[2:], stdout, stderr)
	case "queue flush", "queue hold", "queue release", "queue retry", "queue delete":
		return adminQueueOp(args[1], args[2:], stdout, stderr)
	case "log search":
		return adminLog(args[1:], stdout, stderr)
	case "cluster transfer", "cluster remove", "cluster snapshot":
		return adminCluster(args[1], args[2:], stdout, stderr)
	case "snapshot save", "snapshot restore":
		return adminSnapshot(args[1], args[2:], stdout, stderr)
	}
	fmt.Fprintf(stderr, "lifeline admin: unknown command %q\n%s", strings.Join(args[:2], " "), adminUsage+accountsUsage+consoleUsage)
	return errUsage
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

func adminDomainPut(create bool, args []string, stdout, stderr io.Writer) error {
	fs, a := apiCommand("admin domain", stderr, true)
	var req api.DomainRequest
	var dests multiFlag
	fs.Var(&dests, "destination", "HOST:PORT of the customer's mail server; repeat it for backups, most preferred first")
	fs.StringVar(&req.Org, "org", "", "organisation the domain belongs to (set: unchanged when omitted)")
	name, err := oneName(fs, args, "domain name")
	if err != nil {
		return err
	}
	if err := destinationsOf(&req, dests); err != nil {
		return err
	}
	req.Name = name
	ctx, cancel := ctx30()
	defer cancel()
	c := a.client()
	put := c.AddDomain
	if !create {
		put = c.SetDomain
	}
	d, err := put(ctx, req)
	if err != nil {
		return err
	}
	if a.json {
		return printJSON(stdout, d)
	}
	fmt.Fprintf(stdout, "%s -> %s\n", d.Name, targetsText(*d))
	return nil
}

func targetsText(d fsm.Domain) string {
	var a []string
	for _, t := range d.Targets() {
		a = append(a, t.Addr)
	}
	return strings.Join(a, ", ")
}

func adminDomainRemove(args []string, stdout, stderr io.Writer) error {
	fs, a := apiCommand("admin domain remove", stderr, false)
	name, err := oneName(fs, args, "domain name")
	if err != nil {
		return err
	}
	ctx, cancel := ctx30()
	defer cancel()
	if err := a.client().RemoveDomain(ctx, name); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "removed %s\n", name)
	return nil
}

func adminDomainList(args []string, stdout, stderr io.Writer) error {
	fs, a := apiCommand("admin domain list", stderr, true)
	if _, err := parseInterleaved(fs, args); err != nil {
		return err
	}
	ctx, cancel := ctx30()
	defer cancel()
	ds, err := a.client().Domains(ctx)
	if err != nil {
		return err
	}
	if a.json {
		return printJSON(stdout, ds)
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "DOMAIN\tDESTINATION\tORG\tSTATE")
	for _, d := range ds {
		state := "delivering"
		if d.Spooling {
			state = "spooling: " + d.LastError
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", d.Name, targetsText(d), orDash(d.Org), state)
	}
	return tw.Flush()
}

func adminQueueList(args []string, stdout, stderr io.Writer) error {
	fs, a := apiCommand("admin queue list", stderr, true)
	var f apiclient.QueueFilter
	fs.StringVar(&f.Domain, "domain", "", "only messages with a recipient in this domain")
	fs.StringVar(&f.Sender, "sender", "", "only senders containing this text")
	fs.StringVar(&f.Recipient, "recipient", "", "only recipients containing this text")
	fs.StringVar(&f.State, "state", "", "only held, deferred or new messages")
	fs.StringVar(&f.OlderThan, "older-than", "", "only messages received longer ago than this (e.g. 4h)")
	fs.StringVar(&f.NewerThan, "newer-than", "", "only messages received within this (e.g. 30m)")
	if _, err := parseInterleaved(fs, args); err != nil {
		return err
	}
	ctx, cancel := ctx30()
	defer cancel()
	msgs, err := a.client().Queue(ctx, f)
	if err != nil {
		return err
	}
	if a.json {
		return printJSON(stdout, msgs)
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tSIZE\tRECEIVED\tFROM\tRECIPIENTS")
	for _, m := range msgs {
		var rc []string
		for _, r := range m.Recipients {
			rc = append(rc, r.Address)
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t<%s>\t%s\n", m.ID, m.Size, m.Received.Format(time.RFC3339), m.From, strings.Join(rc, ", "))
	}
	tw.Flush()
	fmt.Fprintf(stdout, "%d messages\n", len(msgs))
	return nil
}

func adminQueueShow(args []string, stdout, stderr io.Writer) error {
	fs, a := apiCommand("admin queue show", stderr, true)
	id, err := oneName(fs, args, "queue ID")
	if err != nil {
		return err
	}
	ctx, cancel := ctx30()
	defer cancel()
	m, err := a.client().Message(ctx, id)
	if err != nil {
		return err
	}
	if a.json {
		return printJSON(stdout, m)
	}
	fmt.Fprintf(stdout, "ID:        %s\nFrom:      <%s>\nSize:      %d\nReceived:  %s from %s (%s) on %s\nTLS:       %v\n",
		m.ID, m.From, m.Size, m.Received.Format(time.RFC3339), m.Helo, m.RemoteAddr, m.Node, m.TLS)
	if m.Ret != "" || m.EnvID != "" {
		fmt.Fprintf(stdout, "DSN:       RET=%s ENVID=%s\n", orDash(m.Ret), orDash(m.EnvID))
	}
	fmt.Fprintf(stdout, "Body:      %s\n", m.Blob)
	for _, r := range m.Recipients {
		fmt.Fprintf(stdout, "  %s  %s  attempts %d", r.Address, r.State, r.Attempts)
		if r.NextAttempt != nil {
			fmt.Fprintf(stdout, "  next %s", r.NextAttempt.Format(time.RFC3339))
		}
		fmt.Fprintln(stdout)
		for _, a := range r.History {
			fmt.Fprintf(stdout, "    %s  %s\n", a.At.Format(time.RFC3339), a.Reply)
		}
	}
	return nil
}

func adminQueueOp(op string, args []string, stdout, stderr io.Writer) error {
	fs, a := apiCommand("admin queue "+op, stderr, false)
	bounce := fs.Bool("dsn", false, "delete: return the message to its sender with a failure notice")
	pos, err := parseInterleaved(fs, args)
	if err != nil {
		return err
	}
	id := ""
	if op == "flush" {
		if len(pos) != 0 {
			return errors.New("flush takes no arguments")
		}
	} else if len(pos) != 1 {
		return errors.New("want exactly one queue ID")
	} else {
		id = pos[0]
	}
	ctx, cancel := ctx30()
	defer cancel()
	if err := a.client().QueueOp(ctx, op, id, *bounce); err != nil {
		return err
	}
	if op == "flush" {
		fmt.Fprintln(stdout, "queue flushed: every queued message is due now")
	} else {
		fmt.Fprintf(stdout, "%s: %s\n", id, op)
	}
	return nil
}

func adminCluster(op string, args []string, stdout, stderr io.Writer) error {
	fs, a := apiCommand("admin cluster "+op, stderr, false)
	to := fs.String("to", "", "transfer: the node to hand leadership to (default: the most up-to-date follower)")
	pos, err := parseInterleaved(fs, args)
	if err != nil {
		return err
	}
	ctx, cancel := ctx30()
	defer cancel()
	if op == "snapshot" {
		secs, err := a.client().Snapshot(ctx)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "snapshot written in %.3fs\n", secs)
		return nil
	}
	if op == "transfer" {
		if len(pos) != 0 {
			return errors.New("transfer takes no arguments; use --to ID")
		}
		if err := a.client().TransferLeadership(ctx, *to); err != nil {
			return err
		}
		fmt.Fprintln(stdout, "leadership transferred")
		return nil
	}
	if len(pos) != 1 {
		return errors.New("want exactly one node ID")
	}
	if err := a.client().RemoveServer(ctx, pos[0]); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "removed %s from the cluster\n", pos[0])
	return nil
}
