package main

import (
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"lifeline/webui/apiclient"
)

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
