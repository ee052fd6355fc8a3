package accounts

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"lifeline/fsm"
	"lifeline/webui/logs"
)

// Users are added without a password: a welcome email carries a one-time
// link (kept as a hash in the replicated state, valid for WelcomeTTL) to
// choose one, so people can sign in before an outage rather than during
// one.

// WelcomeTTL and ResetTTL are how long password links work.
const (
	WelcomeTTL = 7 * 24 * time.Hour
	ResetTTL   = 48 * time.Hour
)

// Backend is what password links need from their node.
type Backend interface {
	Store() *fsm.Store
	ApplyVisible(ctx context.Context, cmd any) error
	Now() time.Time
	// SendMail queues a message through the spool, like received mail.
	SendMail(ctx context.Context, from string, rcpts []string, body []byte) (string, error)
	// MailHostname names this cluster in Message-IDs.
	MailHostname() string
}

// Links issues password links: one-time links (welcome or reset) with
// which a user of an organisation chooses a password at /welcome/{token}.
type Links struct {
	B Backend
	// Rand, if set, replaces crypto/rand (tests).
	Rand io.Reader
}

// Request says who asks for links, for the audit log, and where they
// lead.
type Request struct {
	// Actor is who asked: a console user's email, or the operator.
	Actor string
	// Addr is the address the request came from.
	Addr string
	// Site is the base URL the links point at (scheme and host).
	Site string
}

// Send issues links of kind (fsm.TokenWelcome or fsm.TokenReset) for
// emails, users of o, in one command with its audit entry, then queues an
// email with each link through the spool like any mail the cluster
// writes. It returns how many emails were queued.
func (l Links) Send(ctx context.Context, req Request, o fsm.Org, emails []string, kind string) (int, error) {
	if len(emails) > fsm.MaxImport {
		return 0, fmt.Errorf("at most %d at a time", fsm.MaxImport)
	}
	now := l.B.Now()
	ttl := WelcomeTTL
	if kind == fsm.TokenReset {
		ttl = ResetTTL
	}
	cmd := &fsm.PasswordTokens{At: now.UnixNano()}
	links := map[string]string{}
	for _, e := range emails {
		b := make([]byte, 32)
		if _, err := io.ReadFull(l.rand(), b); err != nil {
			return 0, err
		}
		tok := base64.RawURLEncoding.EncodeToString(b)
		cmd.Tokens = append(cmd.Tokens, fsm.PasswordToken{Hash: LinkHash(tok), Email: e, Kind: kind, Expires: now.Add(ttl).UnixNano(), By: req.Actor})
		links[e] = req.Site + "/welcome/" + tok
	}
	a, err := fsm.NewAudited(cmd, fsm.AuditEntry{At: now.UnixNano(), Kind: logs.AuditPasswordLink, Actor: req.Actor, Org: o.Name,
		Addr: req.Addr, Target: strings.Join(emails, " "), Detail: kind})
	if err != nil {
		return 0, err
	}
	if len(a.Entry.Target) > 254 {
		a.Entry.Target = a.Entry.Target[:250] + "..."
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := l.B.ApplyVisible(ctx, a); err != nil {
		var ve *fsm.ValidationError
		if errors.As(err, &ve) {
			return 0, errors.New(ve.Msg)
		}
		return 0, err
	}
	sent := 0
	for _, t := range cmd.Tokens {
		u, _, _ := l.B.Store().User(t.Email)
		body := passwordMail(l.B.MailHostname(), o.Name, u, links[t.Email], req.Site, kind, now, now.Add(ttl))
		if _, err := l.B.SendMail(ctx, "", []string{t.Email}, body); err != nil {
			return sent, err
		}
		sent++
	}
	return sent, nil
}

func passwordMail(host, org string, u fsm.User, link, base, kind string, now, until time.Time) []byte {
	var b bytes.Buffer
	subject := "Your Lifeline Emergency Inbox account"
	intro := fmt.Sprintf("%s uses Lifeline to keep your email flowing when its mail server is down.\r\n"+
		"In an outage you can read and answer your mail at %s/login.\r\n\r\n"+
		"Choose your password now, so you can sign in when you need it:\r\n", org, base)
	if kind == fsm.TokenReset {
		subject = "Choose a new password for your Lifeline Emergency Inbox"
		intro = "An administrator of " + org + " asked for your Lifeline Emergency Inbox password to be reset.\r\nChoose a new one here:\r\n"
	}
	fmt.Fprintf(&b, "From: Lifeline <noreply@%s>\r\nTo: <%s>\r\nSubject: %s\r\nDate: %s\r\nMessage-ID: <%d.%s@%s>\r\n",
		host, u.Email, subject, now.UTC().Format(time.RFC1123Z), now.UnixNano(), kind, host)
	b.WriteString("Auto-Submitted: auto-generated\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n")
	if u.DisplayName != "" {
		fmt.Fprintf(&b, "Hello %s,\r\n\r\n", u.DisplayName)
	}
	b.WriteString(intro)
	fmt.Fprintf(&b, "\r\n  %s\r\n\r\nThe link works once, until %s. Your sign-in name is %s.\r\n", link, until.UTC().Format("2 Jan 2006 15:04 MST"), u.Email)
	return b.Bytes()
}

func (l Links) rand() io.Reader {
	if l.Rand != nil {
		return l.Rand
	}
	return rand.Reader
}

// LinkHash is how the token of a password link is kept in the state, so
// the state alone cannot open the link.
func LinkHash(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:])
}
