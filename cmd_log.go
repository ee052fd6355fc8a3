package main

import (
	"context"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"lifeline/webui/apiclient"
)

// adminLogSearch searches the message log of every node.
func adminLogSearch(args []string, stdout, stderr io.Writer) error {
	fs, a := apiCommand("admin log search", stderr, true)
	var f apiclient.LogFilter
	for name, dst := range map[string]*string{"id": &f.ID, "sender": &f.Sender, "recipient": &f.Recipient,
		"status": &f.Status, "since": &f.Since, "until": &f.Until, "limit": &f.Limit} {
		fs.Func(name, "filter by "+name, func(v string) error { *dst = v; return nil })
	}
	asCSV := fs.Bool("csv", false, "print every matching entry as CSV")
	if _, err := parseInterleaved(fs, args); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	c := a.client()
	if *asCSV {
		csv, err := c.ExportLog(ctx, f)
		if err != nil {
			return err
		}
		defer csv.Close()
		_, err = io.Copy(stdout, csv)
		return err
	}
	page, err := c.SearchLog(ctx, f)
	if err != nil {
		return err
	}
	if a.json {
		return printJSON(stdout, page)
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "TIME\tNODE\tKIND\tSTATUS\tQUEUE ID\tFROM\tTO\tDETAIL")
	for _, e := range page.Entries {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t<%s>\t%s\t%s\n", e.Time.Format(time.RFC3339), e.Node, e.Kind, e.Status,
			orDash(e.QueueID), e.From, strings.Join(e.To, ","), e.Detail)
	}
	tw.Flush()
	if len(page.Missing) > 0 {
		fmt.Fprintf(stdout, "nodes that did not answer: %s\n", strings.Join(page.Missing, ", "))
	}
	return nil
}
