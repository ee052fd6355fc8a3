package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"text/tabwriter"
	"time"

	"lifeline/webui/api"
)

// adminLog searches the message log of every node.
func adminLog(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] != "search" {
		return errors.New("usage: lifeline admin log search [--id ID] [--sender A] [--recipient A] [--status S] [--since 2h] [--until T] [--limit N] [--json|--csv]")
	}
	fs, a := apiCommand("admin log search", stderr, true)
	q := url.Values{}
	for _, name := range []string{"id", "sender", "recipient", "status", "since", "until", "limit"} {
		fs.Func(name, "filter by "+name, func(v string) error { q.Set(name, v); return nil })
	}
	asCSV := fs.Bool("csv", false, "print every matching entry as CSV")
	if _, err := parseInterleaved(fs, args[1:]); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	path := "/api/v1/log?"
	if *asCSV {
		path = "/api/v1/log.csv?"
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimSuffix(a.server, "/")+path+q.Encode(), nil)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+a.token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		var e struct {
			Error string `json:"error"`
		}
		json.NewDecoder(resp.Body).Decode(&e)
		return fmt.Errorf("%d: %s", resp.StatusCode, e.Error)
	}
	if *asCSV {
		_, err := io.Copy(stdout, resp.Body)
		return err
	}
	var page api.LogPage
	if err := json.NewDecoder(resp.Body).Decode(&page); err != nil {
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
