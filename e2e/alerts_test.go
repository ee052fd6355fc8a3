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
	contactsAddr := freePort(t)
	contacts := startSmtpSink(t, contactsAddr)
	gw := startSMSGateway(t)
	live := freePort(t)
	customer := startSmtpSink(t, live)
	procs := startCluster(t, 3, "--transport", "contacts.test="+contactsAddr, "--retry-schedule", "1s,2s")
	p := procs[0]
	pw := filepath.Join(t.TempDir(), "sms-password")
	os.WriteFile(pw, []byte("gateway secret\n"), 0o600)
	p.mustCLI("admin", "org", "add", "Acme")
	p.mustCLI("admin", "domain", "add", "acme.test", "--destination", live, "--org", "Acme")
	p.mustCLI("admin", "alerts", "gateway", "--url", "http://"+gw.addr+"/send", "--user", "lifeline", "--password-file", pw)
	p.mustCLI("admin", "alerts", "set", "Acme", "--enable", "--to", "both", "--via", "both", "--repeat", "1h",
		"--admin-name", "Ada Admin", "--admin-email", "admin@contacts.test", "--admin-mobile", "+447700900001",
		"--tech-email", "tech@contacts.test", "--tech-mobile", "+447700900002")

	// The outage: the destination is pointed at a dead address.
	dead := freePort(t)
	p.mustCLI("admin", "domain", "set", "acme.test", "--destination", dead)
	waitFor(t, "the change on every node", 10*time.Second, func() bool {
		for _, q := range procs {
			if out, err := q.cli("admin", "domain", "list"); err != nil || !strings.Contains(out, dead) {
				return false
			}
		}
		return true
	})
	const total = 4
	for i := 0; i < total; i++ {
		q := procs[i%3]
		if reply, err := sendOnce(q.smtp, "sender@example.net", "user@acme.test", "Subject: during the outage\r\n\r\nbody\r\n"); err != nil || !strings.HasPrefix(reply, "250") {
			t.Fatalf("message %d: %q %v", i, reply, err)
		}
	}
	const spoolSubject, drainSubject = "acme.test is spooling", "acme.test delivers again"
	waitFor(t, "the spooling alerts", 60*time.Second, func() bool {
		ms, ps := contacts.messages(), gw.posts()
		return countMail(ms, "admin@contacts.test", spoolSubject) >= 1 && countMail(ms, "tech@contacts.test", spoolSubject) >= 1 &&
			countSMS(ps, "+447700900001", "unreachable") >= 1 && countSMS(ps, "+447700900002", "unreachable") >= 1
	})
	// The alert emails have left the queue (their delivery is recorded),
	// so nothing of them is in flight when the leader dies.
	waitFor(t, "the alert emails to leave the queue", 30*time.Second, func() bool {
		out, err := p.cli("admin", "queue", "list", "--domain", "contacts.test")
		return err == nil && strings.Contains(out, "\n0 messages")
	})

	leader := leaderProc(t, procs)
	if leader == nil {
		t.Fatal("no leader")
	}
	leader.kill9()
	var rest []*proc
	for _, q := range procs {
		if q != leader {
			rest = append(rest, q)
		}
	}
	var newLeader *proc
	waitFor(t, "a new leader", 30*time.Second, func() bool {
		newLeader = leaderProc(t, rest)
		return newLeader != nil
	})
	// Absence takes a while to show: give the new leader several alert
	// passes (one a second) while the domain keeps spooling.
	time.Sleep(5 * time.Second)
	if out := newLeader.mustCLI("admin", "domain", "list"); !strings.Contains(out, "spooling") {
		t.Fatalf("domain not spooling after the leader change:\n%s", out)
	}
	ms, ps := contacts.messages(), gw.posts()
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
	newLeader.mustCLI("admin", "domain", "set", "acme.test", "--destination", live)
	newLeader.mustCLI("admin", "queue", "flush")
	waitFor(t, "the spool to drain", 60*time.Second, func() bool { return len(customer.messages()) >= total })
	waitFor(t, "the drained alerts", 60*time.Second, func() bool {
		ms, ps := contacts.messages(), gw.posts()
		return countMail(ms, "admin@contacts.test", drainSubject) >= 1 && countMail(ms, "tech@contacts.test", drainSubject) >= 1 &&
			countSMS(ps, "+447700900001", "delivers again") >= 1 && countSMS(ps, "+447700900002", "delivers again") >= 1
	})
	time.Sleep(3 * time.Second)
	ms, ps = contacts.messages(), gw.posts()
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
	t.Logf("alerts: %d emails, %d SMS; leader %s killed between spooling and drain, new leader %s", len(ms), len(ps), leader.id, newLeader.id)
}
