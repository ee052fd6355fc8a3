package e2e

import (
	"bytes"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"lifeline/e2e/kit"
)

// smsGateway is a loopback HTTP server standing in for an SMS provider.
type smsGateway struct {
	mu   sync.Mutex
	addr string
	sms  []smsPost
}

type smsPost struct {
	To, Text, Key, User, Password string
}

func startSMSGateway(t *testing.T) *smsGateway {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g := &smsGateway{addr: ln.Addr().String()}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		user, pw, _ := r.BasicAuth()
		if r.Method != http.MethodPost || r.URL.Path != "/send" || r.ParseForm() != nil {
			http.Error(w, "bad request", http.StatusBadRequest)
			return
		}
		g.mu.Lock()
		g.sms = append(g.sms, smsPost{To: r.PostFormValue("to"), Text: r.PostFormValue("text"), Key: r.Header.Get("Idempotency-Key"), User: user, Password: pw})
		g.mu.Unlock()
		w.WriteHeader(http.StatusAccepted)
		w.Write([]byte(`{"status":"queued"}`))
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return g
}

func (g *smsGateway) posts() []smsPost {
	g.mu.Lock()
	defer g.mu.Unlock()
	return append([]smsPost(nil), g.sms...)
}

func countSMS(ps []smsPost, to, text string) int {
	n := 0
	for _, p := range ps {
		if p.To == to && strings.Contains(p.Text, text) {
			n++
		}
	}
	return n
}

func countMail(ms [][]byte, to, subject string) int {
	n := 0
	for _, m := range ms {
		if bytes.Contains(m, []byte("<"+to+">\n")) || bytes.Contains(m, []byte("<"+to+">\r\n")) {
			if !bytes.Contains(m, []byte(subject)) {
				continue
			}
			n++
		}
	}
	return n
}

// Spooling alerts with real processes: alerts on for both contacts by
// email and SMS; the destination goes dead (pointed at a closed port, as
// an admin rehearses an outage): exactly one email and one SMS per
// contact. The leader is killed while the domain spools: the new leader
// sends nothing again. The destination comes back and the spool drains:
// the drained alert arrives, once per contact and channel.
func TestSpoolingAlertsOnceAcrossLeaderChange(t *testing.T) {
	contactsAddr := kit.FreePort(t)
	contacts := kit.StartSink(t, contactsAddr)
	gw := startSMSGateway(t)
	live := kit.FreePort(t)
	customer := kit.StartSink(t, live)
	procs := startCluster(t, 3, "--transport", "contacts.test="+contactsAddr, "--retry-schedule", "1s,2s")
	p := procs[0]
	pw := filepath.Join(t.TempDir(), "sms-password")
	os.WriteFile(pw, []byte("gateway secret\n"), 0o600)
	p.MustCLI("admin", "org", "add", "Acme")
	p.MustCLI("admin", "domain", "add", "acme.test", "--destination", live, "--org", "Acme")
	p.MustCLI("admin", "alerts", "gateway", "--url", "http://"+gw.addr+"/send", "--user", "lifeline", "--password-file", pw)
	p.MustCLI("admin", "alerts", "set", "Acme", "--enable", "--to", "both", "--via", "both", "--repeat", "1h",
		"--admin-name", "Ada Admin", "--admin-email", "admin@contacts.test", "--admin-mobile", "+447700900001",
		"--tech-email", "tech@contacts.test", "--tech-mobile", "+447700900002")

	// The outage: the destination is pointed at a dead address.
	dead := kit.FreePort(t)
	p.MustCLI("admin", "domain", "set", "acme.test", "--destination", dead)
	kit.Wait(t, 10*time.Second, 50*time.Millisecond, "the change on every node", func() (bool, error) {
		for _, q := range procs {
			if out, err := q.CLI("admin", "domain", "list"); err != nil || !strings.Contains(out, dead) {
				return false, nil
			}
		}
		return true, nil
	})
	const total = 4
	for i := 0; i < total; i++ {
		q := procs[i%3]
		if reply, err := kit.Send(q.SMTP, "sender@example.net", []string{"user@acme.test"}, "Subject: during the outage\r\n\r\nbody\r\n"); err != nil || !strings.HasPrefix(reply.String(), "250") {
			t.Fatalf("message %d: %q %v", i, reply, err)
		}
	}
	const spoolSubject, drainSubject = "acme.test is spooling", "acme.test delivers again"
	kit.Wait(t, 60*time.Second, 50*time.Millisecond, "the spooling alerts", func() (bool, error) {
		ms, ps := contacts.Messages(), gw.posts()
		return countMail(ms, "admin@contacts.test", spoolSubject) >= 1 && countMail(ms, "tech@contacts.test", spoolSubject) >= 1 &&
			countSMS(ps, "+447700900001", "unreachable") >= 1 && countSMS(ps, "+447700900002", "unreachable") >= 1, nil
	})
	// The alert emails have left the queue (their delivery is recorded),
	// so nothing of them is in flight when the leader dies.
	kit.Wait(t, 30*time.Second, 50*time.Millisecond, "the alert emails to leave the queue", func() (bool, error) {
		out, err := p.CLI("admin", "queue", "list", "--domain", "contacts.test")
		return err == nil && strings.Contains(out, "\n0 messages"), nil
	})

	leader := kit.Leader(procs)
	if leader == nil {
		t.Fatal("no leader")
	}
	leader.Kill()
	var rest []*kit.Proc
	for _, q := range procs {
		if q != leader {
			rest = append(rest, q)
		}
	}
	var newLeader *kit.Proc
	kit.Wait(t, 30*time.Second, 50*time.Millisecond, "a new leader", func() (bool, error) {
		newLeader = kit.Leader(rest)
		return newLeader != nil, nil
	})
	// Absence takes a while to show: the new leader must have made several
	// alert passes (one a second, begun before its delivery engine) while
	// the domain keeps spooling. Its engine probing the dead destination
	// four times, one probe a second, shows that it has; and an alert it
	// decided meanwhile would have left its emails at the contacts' server
	// by the time the queue holds none.
	const probes = `lifeline_delivery_outcomes_total{outcome="deferred"}`
	kit.Wait(t, 30*time.Second, 100*time.Millisecond, "four probes of the dead destination by the new leader "+newLeader.ID, func() (bool, error) {
		n, err := newLeader.Metric(probes)
		return err == nil && n >= 4, nil
	})
	kit.Wait(t, 30*time.Second, 50*time.Millisecond, "no alert email in the queue", func() (bool, error) {
		out, err := newLeader.CLI("admin", "queue", "list", "--domain", "contacts.test")
		return err == nil && strings.Contains(out, "\n0 messages"), nil
	})
	if out := newLeader.MustCLI("admin", "domain", "list"); !strings.Contains(out, "spooling") {
		t.Fatalf("domain not spooling after the leader change:\n%s", out)
	}
	ms, ps := contacts.Messages(), gw.posts()
	for _, c := range []string{"admin@contacts.test", "tech@contacts.test"} {
		if n := countMail(ms, c, spoolSubject); n != 1 {
			t.Errorf("%d spooling alert emails to %s after the leader change, want 1", n, c)
		}
	}
	for _, m := range []string{"+447700900001", "+447700900002"} {
		if n := countSMS(ps, m, "unreachable"); n != 1 {
			t.Errorf("%d spooling SMS to %s after the leader change, want 1", n, m)
		}
	}

	// The destination comes back; the spool drains; the drained alert.
	newLeader.MustCLI("admin", "domain", "set", "acme.test", "--destination", live)
	newLeader.MustCLI("admin", "queue", "flush")
	kit.Wait(t, 60*time.Second, 50*time.Millisecond, "the spool to drain", func() (bool, error) { return len(customer.Messages()) >= total, nil })
	kit.Wait(t, 60*time.Second, 50*time.Millisecond, "the drained alerts", func() (bool, error) {
		ms, ps := contacts.Messages(), gw.posts()
		return countMail(ms, "admin@contacts.test", drainSubject) >= 1 && countMail(ms, "tech@contacts.test", drainSubject) >= 1 &&
			countSMS(ps, "+447700900001", "delivers again") >= 1 && countSMS(ps, "+447700900002", "delivers again") >= 1, nil
	})
	// Everything the drained alert queued has gone out and is recorded:
	// the message log shows both SMS sent, and the queue holds none of its
	// emails. The record that it was sent went with them, so no later
	// pass of this leader decides it again, and the counts are final.
	kit.Wait(t, 30*time.Second, 200*time.Millisecond, "the drained alert's SMS recorded and its emails delivered", func() (bool, error) {
		sent := 0
		for _, e := range searchLog(t, newLeader, "--status", "sms sent").Entries {
			if strings.HasPrefix(e.Detail, "drained alert for acme.test") {
				sent++
			}
		}
		out, err := newLeader.CLI("admin", "queue", "list", "--domain", "contacts.test")
		return sent >= 2 && err == nil && strings.Contains(out, "\n0 messages"), nil
	})
	ms, ps = contacts.Messages(), gw.posts()
	for _, c := range []string{"admin@contacts.test", "tech@contacts.test"} {
		if a, b := countMail(ms, c, spoolSubject), countMail(ms, c, drainSubject); a != 1 || b != 1 {
			t.Errorf("%s got %d spooling and %d drained alert emails, want 1 and 1", c, a, b)
		}
	}
	keys := map[string]bool{}
	for _, s := range ps {
		if s.User != "lifeline" || s.Password != "gateway secret" || s.Key == "" || keys[s.Key] {
			t.Errorf("SMS post without credentials or a fresh Idempotency-Key: %+v", s)
		}
		keys[s.Key] = true
	}
	if len(ps) != 4 {
		t.Errorf("%d SMS, want 4 (one spooling and one drained per contact): %+v", len(ps), ps)
	}
	for _, m := range ms {
		if bytes.Contains(m, []byte(spoolSubject)) && !bytes.Contains(m, []byte("has not accepted mail since")) {
			t.Errorf("spooling alert does not say since when:\n%s", m)
		}
	}
	t.Logf("alerts: %d emails, %d SMS; leader %s killed between spooling and drain, new leader %s", len(ms), len(ps), leader.ID, newLeader.ID)
}
