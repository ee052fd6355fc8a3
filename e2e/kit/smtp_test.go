package kit

import (
	"bufio"
	"strings"
	"testing"
)

func TestReadReply(t *testing.T) {
	for _, c := range []struct {
		in       string
		code     int
		enhanced string
		text     string
		last     string
	}{
		{"250 2.0.0 Ok: queued as 01ABC\r\n", 250, "2.0.0", "2.0.0 Ok: queued as 01ABC", "250 2.0.0 Ok: queued as 01ABC"},
		{"250-mx.test\r\n250-PIPELINING\r\n250 ENHANCEDSTATUSCODES\r\n", 250, "", "mx.test\nPIPELINING\nENHANCEDSTATUSCODES", "250 ENHANCEDSTATUSCODES"},
		{"554 5.7.1 <v@elsewhere.test>: relay access denied\n", 554, "5.7.1", "5.7.1 <v@elsewhere.test>: relay access denied", "554 5.7.1 <v@elsewhere.test>: relay access denied"},
		{"354\r\n", 354, "", "", "354"},
		{"451-4.3.0 first\r\n451 4.3.0 second\r\n", 451, "4.3.0", "4.3.0 first\n4.3.0 second", "451 4.3.0 second"},
		{"250 2.1 not an enhanced code\r\n", 250, "", "2.1 not an enhanced code", "250 2.1 not an enhanced code"},
	} {
		r, err := readReply(bufio.NewReader(strings.NewReader(c.in)))
		if err != nil || r.Code != c.code || r.Enhanced != c.enhanced || r.Text != c.text || r.String() != c.last {
			t.Errorf("%q: %d %q %q %q %v", c.in, r.Code, r.Enhanced, r.Text, r.String(), err)
		}
	}
	for _, bad := range []string{"25\r\n", "250x\r\n", "abc ok\r\n", "250-one\r\n451 two\r\n", "250-cut", "099 low\r\n", ""} {
		if r, err := readReply(bufio.NewReader(strings.NewReader(bad))); err == nil {
			t.Errorf("%q parsed as %+v", bad, r)
		}
	}
	if id := (Reply{Code: 250, last: "250 2.0.0 Ok: queued as 01ABC"}).QueueID(); id != "01ABC" {
		t.Errorf("queue ID %q", id)
	}
}

// A refusal ends the transaction with RSET, and the session goes on; the
// message goes out byte for byte with the dot after it.
func TestSessionSend(t *testing.T) {
	f := startFakeMX(t, len(testMessage))
	s, err := Dial(t.Context(), f.ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.Hello("client.test"); err != nil {
		t.Fatal(err)
	}
	res, err := s.Send("a@example.net", []string{"user10@bench.test"}, []byte(testMessage))
	if err != nil || res.Accepted() || res.Stage != "RCPT" || res.Reply.Code != 451 || res.DataSent {
		t.Fatalf("refused RCPT: %+v %v", res, err)
	}
	if e := res.Err(); e == nil || e.Error() != "RCPT: 451 4.3.0 try later" {
		t.Fatalf("refusal as an error: %v", e)
	}
	res, err = s.Send("a@example.net", []string{"user11@bench.test"}, []byte(testMessage))
	if err != nil || !res.Accepted() || !res.DataSent || res.Latency <= 0 || res.Err() != nil {
		t.Fatalf("accepted: %+v %v", res, err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.bodies != 1 || len(f.bad) > 0 {
		t.Fatalf("server saw %d bodies: %v", f.bodies, f.bad)
	}
}

const testMessage = "From: a@example.net\r\nSubject: x\r\n\r\nhello\r\n"
