package node

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"lifeline/fsm"
	"lifeline/node/msglog"
)

// Spooling alerts are a leader duty. alertLoop watches the domains'
// spooling state and proposes an AlertFire when an alert is due; Apply
// records the event and queues the emails in one step, so a new leader
// that reaches the same decision changes nothing (fsm/alerts.go explains
// the once-per-event rule). smsLoop empties the SMS outbox through the
// operator's HTTP gateway.

// alertPoll is how often the leader looks at the domains when nothing
// wakes it.
const alertPoll = time.Second

// drainedWindow: a drain older than this is not announced any more (the
// alerts were off when it happened).
const drainedWindow = 24 * time.Hour

func (n *Node) wakeAlerts() {
	select {
	case n.alertWake <- struct{}{}:
	default:
	}
}

func (n *Node) alertLoop(ctx context.Context) {
	t := time.NewTicker(alertPoll)
	defer t.Stop()
	var lastDrainCheck time.Time
	for {
		n.alertPass(ctx, &lastDrainCheck)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-n.alertWake:
		}
	}
}

// drainCheckEvery spaces the queue counts that decide whether a domain
// has drained: counting walks the spool.
const drainCheckEvery = 3 * time.Second

// AlertPasses counts the alert loop's passes on this node since it
// started: a pass that found nothing to send leaves no other trace, and a
// test that checks that nothing was sent waits for passes, not for time.
func (n *Node) AlertPasses() uint64 { return n.alertPasses.Load() }

func (n *Node) alertPass(ctx context.Context, lastDrainCheck *time.Time) {
	defer n.alertPasses.Add(1)
	domains, err := n.store.Domains()
	if err != nil {
		return
	}
	settings := map[string]fsm.OrgSettings{}
	var qs *fsm.QueueStats
	queue := func() *fsm.QueueStats {
		if qs == nil && time.Since(*lastDrainCheck) >= drainCheckEvery {
			*lastDrainCheck = time.Now()
			if st, err := n.QueueStats(); err == nil {
				qs = &st
			}
		}
		return qs
	}
	for _, d := range domains {
		if d.Org == "" || ctx.Err() != nil {
			continue
		}
		st, ok := settings[d.Org]
		if !ok {
			if st, err = n.store.OrgSettingsOf(d.Org); err != nil {
				return
			}
			settings[d.Org] = st
		}
		if !st.Alerts.Enabled {
			continue
		}
		ep, known, err := n.store.AlertEpisodeOf(d.Name)
		if err != nil {
			return
		}
		now := n.now()
		switch {
		case d.Spooling && d.SpoolingSince != 0:
			if !known || ep.Since < d.SpoolingSince || !ep.StartSent {
				n.fireAlert(ctx, d, st.Alerts, fsm.AlertSpooling, d.SpoolingSince, 0)
			} else if every := st.Alerts.RepeatEvery; every > 0 && ep.Since == d.SpoolingSince && now.UnixNano()-ep.LastAt >= every {
				n.fireAlert(ctx, d, st.Alerts, fsm.AlertReminder, ep.Since, ep.Repeats+1)
			}
		case !d.Spooling && known && ep.StartSent && !ep.DrainSent && d.LastDelivered >= ep.Since:
			since := now.Sub(time.Unix(0, d.LastDelivered))
			// The queue summary is a few seconds old at most: wait until
			// it postdates the domain's recovery before trusting a zero.
			if since < 3*time.Second || since > drainedWindow {
				continue
			}
			if qs := queue(); qs == nil || qs.ByDomain[d.Name] > 0 {
				continue
			}
			n.fireAlert(ctx, d, st.Alerts, fsm.AlertDrained, ep.Since, 0)
		}
	}
}

// fireAlert composes one alert and proposes it.
func (n *Node) fireAlert(ctx context.Context, d fsm.Domain, a fsm.AlertSettings, kind string, since int64, num int) {
	now := n.now()
	// A fresh count: the cached summary may predate the mail that just
	// made the domain spool. Alerts are rare; the walk is affordable.
	qs, _ := n.store.Stats()
	queued := qs.ByDomain[d.Name]
	subject, text, sms := alertText(d, kind, since, num, queued, now)
	cmd := &fsm.AlertFire{Domain: d.Name, Org: d.Org, Since: since, Kind: kind, N: num, At: now.UnixNano()}
	seenMail, seenSMS := map[string]bool{}, map[string]bool{}
	for _, c := range a.Recipients() {
		if a.ByEmail() && c.Email != "" && !seenMail[c.Email] {
			seenMail[c.Email] = true
			body := alertMail(n.cfg.Hostname, c, subject, text, now)
			m, err := n.prepareMail(ctx, "", c.Email, body, now)
			if err != nil {
				n.logger.Warn("cannot prepare alert email", "domain", d.Name, "to", c.Email, "err", err)
				return
			}
			cmd.Mails = append(cmd.Mails, m)
		}
		if a.BySMS() && c.Mobile != "" && !seenSMS[c.Mobile] {
			seenSMS[c.Mobile] = true
			sum := sha256.Sum256([]byte(fmt.Sprintf("%s\x00%d\x00%s\x00%d\x00%s", d.Name, since, kind, num, c.Mobile)))
			cmd.SMS = append(cmd.SMS, fsm.AlertSMS{Key: "lifeline-" + hex.EncodeToString(sum[:16]), To: c.Mobile, Text: sms})
		}
	}
	actx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := n.Apply(actx, cmd); err != nil {
		n.logger.Warn("cannot record alert; the next leader decides again", "domain", d.Name, "kind", kind, "err", err)
		return
	}
	n.logger.Info("alert sent", "domain", d.Name, "kind", kind, "emails", len(cmd.Mails), "sms", len(cmd.SMS))
	n.msglog.Append(msglog.Entry{At: now.UnixNano(), Kind: msglog.KindNotice, Status: "alert", To: mapKeys(seenMail),
		Detail: fmt.Sprintf("%s alert for %s to %d email and %d SMS recipients", kind, d.Name, len(cmd.Mails), len(cmd.SMS))})
	n.wakeDelivery()
	n.wakeSMS()
}

func mapKeys(m map[string]bool) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

func fmtUTC(ns int64) string { return time.Unix(0, ns).UTC().Format("2006-01-02 15:04 MST") }

// alertText is the subject and text of an alert email, and its SMS.
func alertText(d fsm.Domain, kind string, since int64, num int, queued int64, now time.Time) (subject, text, sms string) {
	dur := now.Sub(time.Unix(0, since)).Round(time.Minute)
	switch kind {
	case fsm.AlertDrained:
		subject = fmt.Sprintf("[Lifeline] %s delivers again", d.Name)
		text = fmt.Sprintf("The mail server of %s accepts mail again, and the mail kept while it was\r\n"+
			"unreachable (since %s) has been delivered to it. Nothing is waiting.\r\n", d.Name, fmtUTC(since))
		sms = fmt.Sprintf("Lifeline: %s delivers again; the spool has drained.", d.Name)
		return
	case fsm.AlertReminder:
		subject = fmt.Sprintf("[Lifeline] %s still spooling (%s)", d.Name, dur)
	default:
		subject = fmt.Sprintf("[Lifeline] %s is spooling: its mail server is unreachable", d.Name)
	}
	last := d.LastError
	if last == "" {
		last = "(no answer recorded)"
	}
	ago := ""
	if dur >= time.Minute {
		ago = " (" + dur.String() + " ago)"
	}
	text = fmt.Sprintf("The mail server of %s has not accepted mail since %s%s.\r\n"+
		"Its last answer: %s\r\n\r\n"+
		"Lifeline keeps the domain's mail safe and keeps trying; %d messages are waiting.\r\n"+
		"Users can read and answer their mail in the Emergency Inbox meanwhile.\r\n", d.Name, fmtUTC(since), ago, last, queued)
	sms = fmt.Sprintf("Lifeline: %s mail server unreachable since %s; %d messages kept safe.", d.Name, fmtUTC(since), queued)
	return
}

func alertMail(host string, to fsm.Contact, subject, text string, now time.Time) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "From: Lifeline alerts <alerts@%s>\r\n", host)
	if to.Name != "" {
		fmt.Fprintf(&b, "To: %q <%s>\r\n", to.Name, to.Email)
	} else {
		fmt.Fprintf(&b, "To: <%s>\r\n", to.Email)
	}
	fmt.Fprintf(&b, "Subject: %s\r\nDate: %s\r\nMessage-ID: <%s@%s>\r\n", subject, now.UTC().Format(time.RFC1123Z), newQueueID(now), host)
	// RFC 3834 §5: automatically generated, no auto-replies wanted.
	b.WriteString("Auto-Submitted: auto-generated\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n")
	b.WriteString(text)
	return b.Bytes()
}

// prepareMail stores a body on a quorum and returns the spool entry that
// queues it, for a command that queues mail as part of something else.
func (n *Node) prepareMail(ctx context.Context, from, rcpt string, body []byte, now time.Time) (fsm.SpoolAddSummary, error) {
	hash, size, err := n.cluster.StoreBlob(ctx, bytes.NewReader(body), 0)
	if err != nil {
		return fsm.SpoolAddSummary{}, err
	}
	at := strings.LastIndexByte(rcpt, '@')
	add := fsm.SpoolAdd{ID: newQueueID(now), From: from, BlobHash: hash, Size: size, Node: n.cfg.ID, ReceivedAt: now.UnixNano(),
		Recipients: []fsm.Recipient{{Address: rcpt, Domain: strings.ToLower(rcpt[at+1:])}}}
	return fsm.SpoolAddSummary{Add: add, Summary: summarizeBytes(body)}, nil
}

// The SMS outbox.

const (
	smsAttempts = 5
	smsTimeout  = 15 * time.Second
)

func (n *Node) wakeSMS() {
	select {
	case n.smsWake <- struct{}{}:
	default:
	}
}

type smsTry struct {
	attempts int
	next     time.Time
}

func (n *Node) smsLoop(ctx context.Context) {
	tries := map[string]*smsTry{}
	client := &http.Client{Timeout: smsTimeout, Transport: &http.Transport{DialContext: n.cfg.Dialer.DialContext},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	defer client.CloseIdleConnections()
	t := time.NewTicker(alertPoll)
	defer t.Stop()
	for {
		n.smsPass(ctx, client, tries)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-n.smsWake:
		}
	}
}

func (n *Node) smsPass(ctx context.Context, client *http.Client, tries map[string]*smsTry) {
	pending, err := n.store.SMSOutbox(true, "", 0)
	if err != nil || len(pending) == 0 {
		return
	}
	gw, haveGW, err := n.store.SMSGatewayConfig()
	if err != nil {
		return
	}
	for _, m := range pending {
		if ctx.Err() != nil {
			return
		}
		tr := tries[m.Key]
		if tr == nil {
			tr = &smsTry{}
			tries[m.Key] = tr
		}
		if time.Now().Before(tr.next) {
			continue
		}
		err := errors.New("no SMS gateway is configured (lifeline admin alerts gateway)")
		permanent := false
		if haveGW {
			err, permanent = postSMS(ctx, client, gw, m)
		}
		done := &fsm.AlertSMSDone{Key: m.Key, CreatedAt: m.CreatedAt, At: n.now().UnixNano()}
		if err != nil {
			tr.attempts++
			if !permanent && tr.attempts < smsAttempts {
				tr.next = time.Now().Add(time.Duration(1<<tr.attempts) * time.Second)
				n.logger.Warn("SMS not sent; will retry", "to", m.To, "attempt", tr.attempts, "err", err)
				continue
			}
			done.Error = err.Error()
		}
		actx, cancel := context.WithTimeout(ctx, 10*time.Second)
		aerr := n.Apply(actx, done)
		cancel()
		if aerr != nil {
			// Sent but not recorded: the next leader sends it again,
			// with the same Idempotency-Key.
			n.logger.Warn("cannot record SMS outcome", "to", m.To, "err", aerr)
			continue
		}
		delete(tries, m.Key)
		status := "sms sent"
		if done.Error != "" {
			status = "sms failed"
		}
		n.msglog.Append(msglog.Entry{At: done.At, Kind: msglog.KindNotice, Status: status, To: []string{m.To},
			Detail: m.Kind + " alert for " + m.Domain + ": " + orText(done.Error, m.Text)})
	}
}

func orText(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// postSMS hands one message to the gateway: a form POST of to, text and
// from, with basic authentication, and the outbox key as Idempotency-Key
// so a gateway that supports it drops a repeat after a leader change.
func postSMS(ctx context.Context, client *http.Client, gw fsm.SMSGateway, m fsm.SMSMessage) (err error, permanent bool) {
	form := url.Values{"to": {m.To}, "text": {m.Text}}
	if gw.From != "" {
		form.Set("from", gw.From)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, gw.URL, strings.NewReader(form.Encode()))
	if err != nil {
		return err, true
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Idempotency-Key", m.Key)
	req.Header.Set("User-Agent", "Lifeline")
	if gw.User != "" {
		req.SetBasicAuth(gw.User, gw.Password)
	}
	resp, err := client.Do(req)
	if err != nil {
		return err, false
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	if resp.StatusCode/100 == 2 {
		return nil, false
	}
	err = fmt.Errorf("gateway answered %s: %s", resp.Status, strings.TrimSpace(string(body)))
	return err, resp.StatusCode/100 == 4 && resp.StatusCode != http.StatusTooManyRequests && resp.StatusCode != http.StatusRequestTimeout
}
