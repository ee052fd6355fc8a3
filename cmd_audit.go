package main

import (
	"errors"
	"fmt"
	"io"
	"text/tabwriter"
	"time"
)

func adminAudit(args []string, stdout, stderr io.Writer) error {
	fs, a := apiCommand("admin audit", stderr, true)
	org := fs.String("org", "", "only this organisation")
	limit := fs.Int("limit", 100, "how many entries, newest first")
	if _, err := parseInterleaved(fs, args); err != nil {
		return err
	}
	ctx, cancel := ctx30()
	defer cancel()
	es, err := a.client().Audit(ctx, *org, *limit)
	if err != nil {
		return err
	}
	if a.json {
		return printJSON(stdout, es)
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "TIME\tKIND\tACTOR\tTARGET\tORG\tADDRESS\tDETAIL")
	for _, e := range es {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", time.Unix(0, e.At).UTC().Format(time.RFC3339), e.Kind, e.Actor, orDash(e.Target), orDash(e.Org), orDash(e.Addr), e.Detail)
	}
	return tw.Flush()
}

func adminAuditVerify(args []string, stdout, stderr io.Writer) error {
	fs, a := apiCommand("admin audit verify", stderr, true)
	if _, err := parseInterleaved(fs, args); err != nil {
		return err
	}
	ctx, cancel := ctx30()
	defer cancel()
	v, err := a.client().VerifyAudit(ctx)
	if err != nil {
		return err
	}
	if a.json {
		printJSON(stdout, v)
	} else if v.Check.OK {
		fmt.Fprintf(stdout, "audit chain intact on %s: %d entries", v.Node, v.Check.Entries)
		if v.Check.Legacy > 0 {
			fmt.Fprintf(stdout, " (%d older entries from before the chain)", v.Check.Legacy)
		}
		fmt.Fprintf(stdout, "\nhead %s\n", v.Check.Head)
	} else {
		at := ""
		if v.Check.BrokenAt != 0 {
			at = " (" + time.Unix(0, v.Check.BrokenAt).UTC().Format(time.RFC3339) + ")"
		}
		fmt.Fprintf(stdout, "audit chain BROKEN on %s at entry %d%s: %s\n", v.Node, v.Check.BrokenSeq, at, v.Check.Reason)
	}
	if !v.Check.OK {
		return errors.New("the audit log was tampered with")
	}
	return nil
}
