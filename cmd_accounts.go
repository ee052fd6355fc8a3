package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"lifeline/webui/api"
)

const accountsUsage = `  lifeline admin org add NAME [--require-totp yes|no]
  lifeline admin org set NAME --require-totp yes|no
  lifeline admin org list [--json]
  lifeline admin user add EMAIL --org ORG --password-file FILE [--role admin] [--name NAME]
  lifeline admin user set EMAIL [--password-file FILE] [--role user|admin] [--name NAME]
                          [--disable|--enable] [--reset-totp] [--groups A,B] [--require-totp yes|no]
  lifeline admin user list [--org ORG] [--json]
  lifeline admin partner add EMAIL --org ORG [--org ORG...] --password-file FILE [--name NAME]
  lifeline admin partner set EMAIL [--org ORG...] [--password-file FILE] [--disable|--enable]
  lifeline admin partner list [--json]
  lifeline admin audit [--org ORG] [--limit N] [--json]
`

// runAccounts handles the account verbs of `lifeline admin`; ok is false
// for any other verb.
func runAccounts(args []string, stdout, stderr io.Writer) (ok bool, err error) {
	if len(args) >= 1 && args[0] == "audit" {
		return true, adminAudit(args[1:], stdout, stderr)
	}
	if len(args) < 2 {
		return false, nil
	}
	switch args[0] + " " + args[1] {
	case "org add", "org set", "org list":
		return true, adminOrg(args[1], args[2:], stdout, stderr)
	case "user add", "partner add":
		return true, adminUserAdd(args[0] == "partner", args[2:], stdout, stderr)
	case "user set", "partner set":
		return true, adminUserSet(args[0] == "partner", args[2:], stdout, stderr)
	case "user list", "partner list":
		return true, adminUserList(args[0] == "partner", args[2:], stdout, stderr)
	}
	return false, nil
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

func adminOrg(op string, args []string, stdout, stderr io.Writer) error {
	fs, a := apiCommand("admin org "+op, stderr, true)
	totp := fs.String("require-totp", "", "set: yes or no, whether every user must use two-step sign-in")
	pos, err := parseInterleaved(fs, args)
	if err != nil {
		return err
	}
	ctx, cancel := ctx30()
	defer cancel()
	c := a.client()
	if op == "list" {
		os, err := c.Orgs(ctx)
		if err != nil {
			return err
		}
		if a.json {
			return printJSON(stdout, os)
		}
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "ORG\tREQUIRE TOTP")
		for _, o := range os {
			fmt.Fprintf(tw, "%s\t%v\n", o.Name, o.RequireTOTP)
		}
		return tw.Flush()
	}
	if len(pos) != 1 {
		return errors.New("want exactly one organisation name")
	}
	req := api.OrgRequest{Name: pos[0]}
	switch *totp {
	case "":
	case "yes", "true":
		t := true
		req.RequireTOTP = &t
	case "no", "false":
		f := false
		req.RequireTOTP = &f
	default:
		return errors.New("--require-totp: yes or no")
	}
	put := c.AddOrg
	if op == "set" {
		put = c.SetOrg
	}
	o, err := put(ctx, req)
	if err != nil {
		return err
	}
	if a.json {
		return printJSON(stdout, o)
	}
	fmt.Fprintf(stdout, "organisation %s (require TOTP: %v)\n", o.Name, o.RequireTOTP)
	return nil
}

func adminUserAdd(partner bool, args []string, stdout, stderr io.Writer) error {
	what := "user"
	if partner {
		what = "partner"
	}
	fs, a := apiCommand("admin "+what+" add", stderr, true)
	var orgs multiFlag
	fs.Var(&orgs, "org", "organisation (a partner takes it more than once)")
	pwFile := fs.String("password-file", "", "file holding the password (- for standard input)")
	name := fs.String("name", "", "display name")
	role := "user"
	if !partner {
		fs.StringVar(&role, "role", "user", "user or admin")
	}
	email, err := oneName(fs, args, "email address")
	if err != nil {
		return err
	}
	pw, err := readPasswordFile(*pwFile)
	if err != nil {
		return err
	}
	req := api.UserRequest{Email: email, DisplayName: *name, Password: pw}
	if partner {
		req.Role, req.Orgs = "partner", orgs
	} else {
		if len(orgs) != 1 {
			return errors.New("--org ORG is required, once")
		}
		req.Org = orgs[0]
		switch role {
		case "user":
		case "admin", "org-admin":
			req.Role = "org-admin"
		default:
			return errors.New("--role: user or admin")
		}
	}
	ctx, cancel := ctx30()
	defer cancel()
	u, err := a.client().AddUser(ctx, req)
	if err != nil {
		return err
	}
	if a.json {
		return printJSON(stdout, u)
	}
	fmt.Fprintf(stdout, "%s %s added (%s)\n", what, u.Email, orDash(strings.Join(append([]string{u.Org}, u.Orgs...), " ")))
	return nil
}

func adminUserSet(partner bool, args []string, stdout, stderr io.Writer) error {
	fs, a := apiCommand("admin user set", stderr, true)
	var orgs multiFlag
	if partner {
		fs.Var(&orgs, "org", "the organisations the partner manages (repeat; replaces the list)")
	}
	pwFile := fs.String("password-file", "", "new password from this file")
	name := fs.String("name", "", "new display name")
	role := fs.String("role", "", "user or admin")
	disable := fs.Bool("disable", false, "disable the login and end its sessions")
	enable := fs.Bool("enable", false, "enable a disabled login")
	resetTOTP := fs.Bool("reset-totp", false, "remove the two-step sign-in so the user enrols again")
	groups := fs.String("groups", "\x00", "the user's groups, comma-separated (replaces them; \"\" for none)")
	requireTOTP := fs.String("require-totp", "", "yes or no: make this user enrol two-step sign-in")
	email, err := oneName(fs, args, "email address")
	if err != nil {
		return err
	}
	var p api.UserPatch
	if *pwFile != "" {
		pw, err := readPasswordFile(*pwFile)
		if err != nil {
			return err
		}
		p.Password = &pw
	}
	if *name != "" {
		p.DisplayName = name
	}
	if *role != "" {
		r := *role
		if r == "admin" {
			r = "org-admin"
		}
		p.Role = &r
	}
	if *disable && *enable {
		return errors.New("--disable and --enable together")
	}
	if *disable || *enable {
		d := *disable
		p.Disabled = &d
	}
	if len(orgs) > 0 {
		o := []string(orgs)
		p.Orgs = &o
	}
	p.ResetTOTP = *resetTOTP
	if *groups != "\x00" {
		gs := []string{}
		for _, g := range strings.Split(*groups, ",") {
			if g = strings.TrimSpace(g); g != "" {
				gs = append(gs, g)
			}
		}
		p.Groups = &gs
	}
	switch *requireTOTP {
	case "":
	case "yes", "no":
		v := *requireTOTP == "yes"
		p.RequireTOTP = &v
	default:
		return errors.New("--require-totp wants yes or no")
	}
	ctx, cancel := ctx30()
	defer cancel()
	u, err := a.client().SetUser(ctx, email, p)
	if err != nil {
		return err
	}
	if a.json {
		return printJSON(stdout, u)
	}
	fmt.Fprintf(stdout, "%s updated\n", u.Email)
	return nil
}

func adminUserList(partner bool, args []string, stdout, stderr io.Writer) error {
	fs, a := apiCommand("admin user list", stderr, true)
	org := fs.String("org", "", "only this organisation")
	if _, err := parseInterleaved(fs, args); err != nil {
		return err
	}
	role := ""
	if partner {
		role = "partner"
	}
	ctx, cancel := ctx30()
	defer cancel()
	us, err := a.client().Users(ctx, *org, role)
	if err != nil {
		return err
	}
	if a.json {
		return printJSON(stdout, us)
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "EMAIL\tROLE\tORG\tTOTP\tDISABLED")
	for _, u := range us {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%v\t%v\n", u.Email, u.Role, orDash(strings.Join(append([]string{u.Org}, u.Orgs...), " ")), u.TOTP, u.Disabled)
	}
	return tw.Flush()
}

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
