package fsm

import "testing"

func TestAlertFireOncePerEvent(t *testing.T) {
	f := openTestFSM(t)
	lf := &logFeeder{t: t}
	mail := func(id string) []SpoolAddSummary {
		return []SpoolAddSummary{{Add: SpoolAdd{ID: id, BlobHash: "h" + id, ReceivedAt: 10, Recipients: []Recipient{{Address: "ops@contacts.test", Domain: "contacts.test"}}}}}
	}
	fire := &AlertFire{Domain: "acme.test", Org: "Acme", Since: 100, Kind: AlertSpooling, At: 110, Mails: mail("A1"),
		SMS: []AlertSMS{{Key: "k1", To: "+447700900001", Text: "down"}}}
	applyOK(t, f, lf, fire)
	// A new leader deciding the same: nothing more is queued.
	again := *fire
	again.Mails, again.At = mail("A2"), 120
	again.SMS = []AlertSMS{{Key: "k2", To: "+447700900001", Text: "down"}}
	applyOK(t, f, lf, &again)
	if _, ok, _ := f.Store().Message("A2"); ok {
		t.Fatal("duplicate alert queued")
	}
	if p, _ := f.Store().SMSOutbox(true, "", 0); len(p) != 1 {
		t.Fatalf("pending SMS: %+v", p)
	}
	applyOK(t, f, lf, &AlertSMSDone{Key: "k1", CreatedAt: 110, At: 111})
	if p, _ := f.Store().SMSOutbox(true, "", 0); len(p) != 0 {
		t.Fatalf("SMS still pending: %+v", p)
	}
	applyOK(t, f, lf, &AlertFire{Domain: "acme.test", Org: "Acme", Since: 100, Kind: AlertReminder, N: 1, At: 200, Mails: mail("A3")})
	applyOK(t, f, lf, &AlertFire{Domain: "acme.test", Org: "Acme", Since: 100, Kind: AlertReminder, N: 1, At: 201, Mails: mail("A4")})
	applyOK(t, f, lf, &AlertFire{Domain: "acme.test", Org: "Acme", Since: 100, Kind: AlertDrained, At: 300, Mails: mail("A5")})
	applyOK(t, f, lf, &AlertFire{Domain: "acme.test", Org: "Acme", Since: 100, Kind: AlertDrained, At: 301, Mails: mail("A6")})
	for id, want := range map[string]bool{"A1": true, "A3": true, "A4": false, "A5": true, "A6": false} {
		if _, ok, _ := f.Store().Message(id); ok != want {
			t.Errorf("message %s queued: %v, want %v", id, ok, want)
		}
	}
	ep, _, _ := f.Store().AlertEpisodeOf("acme.test")
	if !ep.StartSent || ep.Repeats != 1 || !ep.DrainSent {
		t.Fatalf("episode: %+v", ep)
	}
	// A new spell of spooling starts a new episode.
	applyOK(t, f, lf, &AlertFire{Domain: "acme.test", Org: "Acme", Since: 400, Kind: AlertSpooling, At: 401, Mails: mail("A7")})
	if _, ok, _ := f.Store().Message("A7"); !ok {
		t.Fatal("new episode's alert not queued")
	}
}
