package main

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"
)

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
