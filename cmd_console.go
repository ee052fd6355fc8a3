package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"lifeline/fsm"
	"lifeline/webui/api"
)

const consoleUsage = `  lifeline admin domain test NAME [--destination HOST:PORT] [--json]
  lifeline admin domain requests [--json]
  lifeline admin domain approve|refuse NAME
  lifeline admin alerts show ORG [--json]
  lifeline admin alerts set ORG [--enable|--disable] [--to admin|tech|both] [--via email|sms|both]
                         [--repeat 4h] [--admin-name N] [--admin-email E] [--admin-mobile +44...]
                         [--tech-name N] [--tech-email E] [--tech-mobile +44...]
  lifeline admin alerts gateway [--url URL [--user U] [--password-file FILE] [--from NAME]] [--json]
  lifeline admin user import FILE --org ORG [--welcome]
  lifeline admin user welcome EMAIL... [--reset]
  lifeline admin user delete EMAIL
  lifeline admin audit verify [--json]
`

// runConsole handles the console's verbs of `lifeline admin`; ok is false
// for any other verb.
func runConsole(args []string, stdout, stderr io.Writer) (ok bool, err error) {
	if len(args) < 2 {
		return false, nil
	}
	switch args[0] + " " + args[1] {
	case "domain test":
		return true, adminDomainTest(args[2:], stdout, stderr)
	case "domain requests":
		return true, adminDomainRequests(args[2:], stdout, stderr)
	case "domain approve", "domain refuse":
		return true, adminDomainDecide(args[1] == "approve", args[2:], stdout, stderr)
	case "alerts show", "alerts set":
		return true, adminAlerts(args[1], args[2:], stdout, stderr)
	case "alerts gateway":
		return true, adminGateway(args[2:], stdout, stderr)
	case "user import":
		return true, adminUserImport(args[2:], stdout, stderr)
	case "user welcome":
		return true, adminUserWelcome(args[2:], stdout, stderr)
	case "user delete":
		return true, adminUserDelete(args[2:], stdout, stderr)
	case "audit verify":
		return true, adminAuditVerify(args[2:], stdout, stderr)
	}
	return false, nil
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

func adminAlerts(op string, args []string, stdout, stderr io.Writer) error {
	fs, a := apiCommand("admin alerts "+op, stderr, true)
	enable := fs.Bool("enable", false, "turn spooling alerts on")
	disable := fs.Bool("disable", false, "turn spooling alerts off")
	to := fs.String("to", "", "admin, tech or both")
	via := fs.String("via", "", "email, sms or both")
	repeat := fs.String("repeat", "", "reminder interval while spooling (0s: none)")
	fields := map[string]*string{}
	for _, who := range []string{"admin", "tech"} {
		for _, what := range []string{"name", "email", "mobile"} {
			fields[who+"-"+what] = fs.String(who+"-"+what, "\x00", "the "+who+" contact's "+what)
		}
	}
	org, err := oneName(fs, args, "organisation")
	if err != nil {
		return err
	}
	ctx, cancel := ctx30()
	defer cancel()
	c := a.client()
	cur, err := c.Alerts(ctx, org)
	if err != nil {
		return err
	}
	if op == "set" {
		if *enable && *disable {
			return errors.New("--enable or --disable, not both")
		}
		cur.Enabled = (cur.Enabled || *enable) && !*disable
		if *to != "" {
			cur.To = *to
		}
		if *via != "" {
			cur.Via = *via
		}
		if *repeat != "" {
			cur.Repeat = *repeat
		}
		set := func(dst *string, key string) {
			if v := *fields[key]; v != "\x00" {
				*dst = v
			}
		}
		set(&cur.Admin.Name, "admin-name")
		set(&cur.Admin.Email, "admin-email")
		set(&cur.Admin.Mobile, "admin-mobile")
		set(&cur.Tech.Name, "tech-name")
		set(&cur.Tech.Email, "tech-email")
		set(&cur.Tech.Mobile, "tech-mobile")
		if cur, err = c.SetAlerts(ctx, org, *cur); err != nil {
			return err
		}
	}
	if a.json {
		return printJSON(stdout, cur)
	}
	state := "off"
	if cur.Enabled {
		state = "on"
	}
	fmt.Fprintf(stdout, "alerts %s, to %s, by %s, repeat every %s\nadmin: %s <%s> %s\ntech:  %s <%s> %s\n", state, cur.To, cur.Via, cur.Repeat,
		orDash(cur.Admin.Name), cur.Admin.Email, cur.Admin.Mobile, orDash(cur.Tech.Name), cur.Tech.Email, cur.Tech.Mobile)
	return nil
}

func adminGateway(args []string, stdout, stderr io.Writer) error {
	fs, a := apiCommand("admin alerts gateway", stderr, true)
	var g api.GatewayRequest
	fs.StringVar(&g.URL, "url", "", "the gateway's URL (http or https); \"none\" removes it")
	fs.StringVar(&g.User, "user", "", "user for HTTP basic authentication")
	pwFile := fs.String("password-file", "", "file with the password for HTTP basic authentication")
	fs.StringVar(&g.From, "from", "", "sender name or number, sent as the from field")
	if _, err := parseInterleaved(fs, args); err != nil {
		return err
	}
	ctx, cancel := ctx30()
	defer cancel()
	c := a.client()
	var out map[string]any
	var err error
	if g.URL != "" {
		if g.URL == "none" {
			g.URL = ""
		}
		if *pwFile != "" {
			if g.Password, err = readPasswordFile(*pwFile); err != nil {
				return err
			}
		}
		out, err = c.SetGateway(ctx, g)
	} else {
		out, err = c.Gateway(ctx)
	}
	if err != nil {
		return err
	}
	if a.json {
		return printJSON(stdout, out)
	}
	if out["configured"] != true {
		fmt.Fprintln(stdout, "no SMS gateway configured")
		return nil
	}
	fmt.Fprintf(stdout, "SMS gateway %v (user %v, password set: %v, from %v)\n", out["url"], orDash(fmt.Sprint(out["user"])), out["password_set"], orDash(fmt.Sprint(out["from"])))
	return nil
}

func adminUserImport(args []string, stdout, stderr io.Writer) error {
	fs, a := apiCommand("admin user import", stderr, true)
	org := fs.String("org", "", "organisation to import into")
	welcome := fs.Bool("welcome", false, "send every imported user a welcome email")
	path, err := oneName(fs, args, "CSV file (- for standard input)")
	if err != nil {
		return err
	}
	if *org == "" {
		return errors.New("--org ORG is required")
	}
	var f io.Reader = os.Stdin
	if path != "-" {
		file, err := os.Open(path)
		if err != nil {
			return err
		}
		defer file.Close()
		f = file
	}
	ctx, cancel := ctx30()
	defer cancel()
	rep, err := a.client().ImportUsers(ctx, *org, f, *welcome)
	if a.json && rep != nil {
		printJSON(stdout, rep)
		return err
	}
	if rep != nil && len(rep.Problems) > 0 {
		fmt.Fprintln(stdout, "nothing was imported; problems:")
		for _, p := range rep.Problems {
			fmt.Fprintf(stdout, "  line %d: %s %s\n", p.Line, p.Email, p.Error)
		}
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "imported %d users; %d welcome emails queued\n", rep.Imported, rep.Welcomed)
	return nil
}

func adminUserWelcome(args []string, stdout, stderr io.Writer) error {
	fs, a := apiCommand("admin user welcome", stderr, false)
	reset := fs.Bool("reset", false, "send a password reset link instead of a welcome")
	emails, err := parseInterleaved(fs, args)
	if err != nil {
		return err
	}
	if len(emails) == 0 {
		return errors.New("name at least one user")
	}
	ctx, cancel := ctx30()
	defer cancel()
	n, err := a.client().SendWelcome(ctx, emails, *reset)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%d emails queued\n", n)
	return nil
}

func adminUserDelete(args []string, stdout, stderr io.Writer) error {
	fs, a := apiCommand("admin user delete", stderr, false)
	email, err := oneName(fs, args, "email address")
	if err != nil {
		return err
	}
	ctx, cancel := ctx30()
	defer cancel()
	if err := a.client().DeleteUser(ctx, email); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "deleted %s\n", email)
	return nil
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
