package main

import (
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"lifeline/fsm"
	"lifeline/webui/api"
)

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

// destinationsOf turns repeated --destination flags into a request: one
// travels as before; several are tried in the order given.
func destinationsOf(req *api.DomainRequest, dests []string) error {
	switch len(dests) {
	case 0:
		return errors.New("--destination HOST:PORT is required")
	case 1:
		req.Destination = dests[0]
		return nil
	}
	for i, d := range dests {
		req.Destinations = append(req.Destinations, fsm.Destination{Addr: d, Pref: 10 * (i + 1)})
	}
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

func adminDomainTest(args []string, stdout, stderr io.Writer) error {
	fs, a := apiCommand("admin domain test", stderr, true)
	dest := fs.String("destination", "", "test only this destination")
	name, err := oneName(fs, args, "domain name")
	if err != nil {
		return err
	}
	ctx, cancel := ctx30()
	defer cancel()
	rep, err := a.client().TestDomain(ctx, name, *dest)
	if err != nil {
		return err
	}
	if a.json {
		return printJSON(stdout, rep)
	}
	for _, t := range rep.Tests {
		if t.OK {
			fmt.Fprintf(stdout, "OK    %s (from %s, %s)\n      greeting: %s\n      ehlo: %s\n", t.Addr, t.Node, t.Elapsed.Round(time.Millisecond), t.Greeting, t.Ehlo)
		} else {
			fmt.Fprintf(stdout, "FAIL  %s (from %s): %s\n", t.Addr, t.Node, t.Error)
		}
	}
	if !rep.OK {
		return errors.New("a destination failed the test")
	}
	return nil
}

func adminDomainRequests(args []string, stdout, stderr io.Writer) error {
	fs, a := apiCommand("admin domain requests", stderr, true)
	if _, err := parseInterleaved(fs, args); err != nil {
		return err
	}
	ctx, cancel := ctx30()
	defer cancel()
	rs, err := a.client().DomainRequests(ctx)
	if err != nil {
		return err
	}
	if a.json {
		return printJSON(stdout, rs)
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "DOMAIN\tORG\tDESTINATIONS\tREQUESTED BY")
	for _, r := range rs {
		var ds []string
		for _, d := range r.Destinations {
			ds = append(ds, d.Addr)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", r.Name, r.Org, strings.Join(ds, ","), orDash(r.RequestedBy))
	}
	return tw.Flush()
}

func adminDomainDecide(approve bool, args []string, stdout, stderr io.Writer) error {
	fs, a := apiCommand("admin domain approve", stderr, false)
	name, err := oneName(fs, args, "domain name")
	if err != nil {
		return err
	}
	ctx, cancel := ctx30()
	defer cancel()
	if err := a.client().DecideDomain(ctx, name, approve); err != nil {
		return err
	}
	if approve {
		fmt.Fprintf(stdout, "approved %s: its mail is accepted now\n", name)
	} else {
		fmt.Fprintf(stdout, "refused %s\n", name)
	}
	return nil
}
