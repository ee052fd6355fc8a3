package api_test

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	gosmtp "github.com/emersion/go-smtp"

	"lifeline/fsm"
	"lifeline/node"
	"lifeline/webui/api"
	"lifeline/webui/apiclient"
	"lifeline/webui/webtest"
)

// mailSink is a loopback SMTP server that keeps what it receives.
type mailSink struct {
	mu   sync.Mutex
	msgs []string
}

func (s *mailSink) NewSession(*gosmtp.Conn) (gosmtp.Session, error) { return &sinkSess{s: s}, nil }

type sinkSess struct{ s *mailSink }

func (ss *sinkSess) Mail(string, *gosmtp.MailOptions) error { return nil }

func (ss *sinkSess) Rcpt(string, *gosmtp.RcptOptions) error { return nil }

func (ss *sinkSess) Reset() {}

func (ss *sinkSess) Logout() error { return nil }

func (ss *sinkSess) Data(r io.Reader) error {
	b, err := io.ReadAll(r)
	ss.s.mu.Lock()
	ss.s.msgs = append(ss.s.msgs, string(b))
	ss.s.mu.Unlock()
	return err
}

func (s *mailSink) messages() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.msgs...)
}

func startMailSink(t *testing.T) (*mailSink, string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &mailSink{}
	srv := gosmtp.NewServer(s)
	srv.Domain = "contacts.test"
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return s, ln.Addr().String()
}

// Turning alerts on while a domain already spools sends one alert at
// once, saying since when, by email and SMS; nothing more follows while
// the spell lasts (no reminders asked for).
func TestEnablingAlertsWhileSpoolingAlertsAtOnce(t *testing.T) {
	sink, sinkAddr := startMailSink(t)
	var mu sync.Mutex
	var sms []string
	gw := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.ParseForm()
		mu.Lock()
		sms = append(sms, r.PostFormValue("to")+": "+r.PostFormValue("text"))
		mu.Unlock()
	}))
	t.Cleanup(gw.Close)
	n, base := webtest.Start(t, node.Config{ID: "a1", Transports: map[string]string{"contacts.test": sinkAddr}})
	tn := &webtest.Tenants{T: t, Node: n, Base: base, API: apiclient.New(base, webtest.Token)}
	ctx := context.Background()
	if _, err := tn.API.AddOrg(ctx, api.OrgRequest{Name: "Acme"}); err != nil {
		t.Fatal(err)
	}
	if _, err := tn.API.AddDomain(ctx, api.DomainRequest{Name: "acme.test", Destination: webtest.ClosedPort(t), Org: "Acme"}); err != nil {
		t.Fatal(err)
	}
	if _, err := tn.API.SetGateway(ctx, api.GatewayRequest{URL: gw.URL + "/sms"}); err != nil {
		t.Fatal(err)
	}
	c, err := gosmtp.Dial(n.SMTPAddr())
	if err != nil {
		t.Fatal(err)
	}
	if err := c.SendMail("x@sender.example", []string{"u@acme.test"}, strings.NewReader("Subject: hi\r\n\r\nhello\r\n")); err != nil {
		t.Fatal(err)
	}
	c.Quit()
	var since time.Time
	webtest.WaitUntil(t, "the domain to spool", func() bool {
		d, _, _ := n.Store().Domain("acme.test")
		since = time.Unix(0, d.SpoolingSince)
		return d.Spooling
	})
	if len(sink.messages()) != 0 {
		t.Fatal("an alert went out while alerts were off")
	}
	a := api.AlertsView{Enabled: true, To: "admin", Via: "both", Repeat: "0s", Admin: fsm.Contact{Email: "ops@contacts.test", Mobile: "+447700900001"}}
	if _, err := tn.API.SetAlerts(ctx, "Acme", a); err != nil {
		t.Fatal(err)
	}
	webtest.WaitUntil(t, "the alert", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(sink.messages()) == 1 && len(sms) == 1
	})
	want := since.UTC().Format("2006-01-02 15:04 MST")
	if m := sink.messages()[0]; !strings.Contains(m, "acme.test is spooling") || !strings.Contains(m, "since "+want) {
		t.Fatalf("alert email does not say since when (%s):\n%s", want, m)
	}
	mu.Lock()
	if !strings.Contains(sms[0], "+447700900001: ") || !strings.Contains(sms[0], "since "+want) {
		t.Fatalf("SMS: %q", sms[0])
	}
	mu.Unlock()
	// Three more passes of the alert loop, each of which would have
	// queued a second alert if it were going to, and nothing of theirs
	// left in the queue for the contacts' server.
	passes := n.AlertPasses()
	webtest.WaitUntil(t, "three more alert passes and an empty queue for contacts.test", func() bool {
		q, err := tn.API.Queue(ctx, apiclient.QueueFilter{Domain: "contacts.test"})
		return err == nil && len(q) == 0 && n.AlertPasses() >= passes+3
	})
	if len(sink.messages()) != 1 {
		t.Fatalf("%d alert emails for one spell of spooling", len(sink.messages()))
	}
	// Reminders, when asked for, repeat while the spell lasts.
	a.Repeat = "2s"
	if _, err := tn.API.SetAlerts(ctx, "Acme", a); err != nil {
		t.Fatal(err)
	}
	webtest.WaitUntil(t, "a reminder", func() bool {
		for _, m := range sink.messages() {
			if strings.Contains(m, "acme.test still spooling") {
				return true
			}
		}
		return false
	})
	if ep, _, _ := n.Store().AlertEpisodeOf("acme.test"); !ep.StartSent || ep.Repeats < 1 || ep.DrainSent {
		t.Fatalf("episode: %+v", ep)
	}
}
