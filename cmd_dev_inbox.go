package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"strings"
	"time"

	gosmtp "github.com/emersion/go-smtp"

	"lifeline/webui/api"
	"lifeline/webui/apiclient"
)

type demoLogin struct{ email, password, role string }

// seedInbox gives the demo organisation two users and, beside the plain
// demo mail, a message with HTML and an attachment, so `lifeline dev`
// shows the Emergency Inbox as a user in an outage sees it.
func seedInbox(ctx context.Context, server, token, smtpAddr string) ([]demoLogin, error) {
	c := apiclient.New(server, token)
	if _, err := c.AddOrg(ctx, api.OrgRequest{Name: "Demo Ltd"}); err != nil {
		return nil, err
	}
	var logins []demoLogin
	for _, u := range []struct{ email, name, role string }{
		{"alice@demo.example", "Alice Demo", "user"},
		{"bob@demo.example", "Bob Demo", "org-admin"},
	} {
		pw := make([]byte, 8)
		rand.Read(pw)
		l := demoLogin{email: u.email, password: hex.EncodeToString(pw), role: u.role}
		if _, err := c.AddUser(ctx, api.UserRequest{Email: u.email, DisplayName: u.name, Role: u.role, Org: "Demo Ltd", Password: l.password}); err != nil {
			return nil, err
		}
		logins = append(logins, l)
	}
	now := time.Now()
	body := strings.Join([]string{
		"From: Priya Partner <priya@partner.example>",
		"To: Alice Demo <alice@demo.example>",
		"Cc: bob@demo.example",
		"Subject: Revised quote, please confirm today",
		"Date: " + now.Format(time.RFC1123Z),
		fmt.Sprintf("Message-ID: <%d.quote@partner.example>", now.UnixNano()),
		"MIME-Version: 1.0",
		`Content-Type: multipart/mixed; boundary="demo-mix"`,
		"",
		"--demo-mix",
		`Content-Type: multipart/alternative; boundary="demo-alt"`,
		"",
		"--demo-alt",
		"Content-Type: text/plain; charset=utf-8",
		"",
		"Hello Alice, the revised quote is attached. Please confirm by 17:00.",
		"--demo-alt",
		"Content-Type: text/html; charset=utf-8",
		"",
		`<p>Hello Alice,</p><p>the <b>revised quote</b> is attached. Please confirm by <span style="color: #a4161a">17:00</span>.</p>` +
			`<p><img src="https://tracker.partner.example/open.gif" alt="">Priya</p>`,
		"--demo-alt--",
		"--demo-mix",
		`Content-Type: text/csv; name="quote.csv"`,
		`Content-Disposition: attachment; filename="quote.csv"`,
		"",
		"item,quantity,price",
		"widget,100,4.20",
		"--demo-mix--",
		"",
	}, "\r\n")
	if err := sendPlainTo(smtpAddr, "priya@partner.example", []string{"alice@demo.example", "bob@demo.example"}, body); err != nil {
		return nil, err
	}
	return logins, nil
}

// sendPlainTo is sendPlain for several recipients.
func sendPlainTo(addr, from string, to []string, body string) error {
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return err
	}
	c := gosmtp.NewClient(conn)
	defer c.Close()
	if err := c.Hello("localhost"); err != nil {
		return err
	}
	return c.SendMail(from, to, strings.NewReader(body))
}
