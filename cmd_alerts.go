package main

import (
	"errors"
	"fmt"
	"io"

	"lifeline/webui/api"
)

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
