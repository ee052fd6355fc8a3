package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"

	"lifeline/webui/api"
)

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
