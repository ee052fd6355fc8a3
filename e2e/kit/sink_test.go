package kit

import (
	"context"
	"strings"
	"testing"
	"time"
)

func TestParseSinkCounter(t *testing.T) {
	for line, want := range map[string]int64{"sess=3 quit=1 mesg=1234\r": 1234, "sess=0 quit=0 mesg=0": 0} {
		if n, ok := ParseSinkCounter(line); !ok || n != want {
			t.Errorf("%q: %d %v, want %d", line, n, ok, want)
		}
	}
	if _, ok := ParseSinkCounter("smtp-sink: fatal: bind"); ok {
		t.Error("a line without a counter parsed")
	}
}

// The sink's counter is what shows the spool really arrived.
func TestSinkCounts(t *testing.T) {
	if _, err := SinkBinary(); err != nil {
		t.Skip(err)
	}
	addr := FreePort(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s := StartCountingSink(t, addr)
	if _, err := Load(ctx, LoadConfig{Addrs: []string{addr}, Sessions: 2, Messages: 7, Size: 1024, RcptDomain: "bench.test"}); err != nil {
		t.Fatal(err)
	}
	WaitErr(t, 5*time.Second, 10*time.Millisecond, func() string { return "" }, func() (bool, error) { return s.Received() == 7, nil })
	if n := s.Received(); n != 7 {
		t.Errorf("sink counted %d messages, want 7", n)
	}
}

// A message sent through Send comes back from the sink's dump byte for
// byte, in LF line endings, without what smtp-sink adds in front.
func TestSinkDumpsWhatWasSent(t *testing.T) {
	if _, err := SinkBinary(); err != nil {
		t.Skip(err)
	}
	s := StartSink(t, FreePort(t))
	msg := "From: a@example.net\r\nSubject: kept\r\n\r\n" + strings.Repeat("line of the body\r\n", 30)
	r, err := Send(s.Addr, "a@example.net", []string{"u@customer.test", "v@customer.test"}, msg)
	if err != nil || r.Code != 250 {
		t.Fatalf("send: %q %v", r, err)
	}
	Wait(t, 5*time.Second, 10*time.Millisecond, "the dump", func() (bool, error) { return len(s.Messages()) == 1, nil })
	if got := string(s.Messages()[0]); got != strings.ReplaceAll(msg, "\r\n", "\n") {
		t.Fatalf("dump differs from the message sent:\n%q", got)
	}
	s.Stop()
	if len(s.StopTimes()) != 1 {
		t.Fatal("stop not recorded")
	}
	if _, err := Send(s.Addr, "a@example.net", []string{"u@customer.test"}, msg); err == nil {
		t.Fatal("a stopped sink took mail")
	}
}

func TestStripSinkHeaders(t *testing.T) {
	dump := "X-Client-Addr: 10.213.7.1\nX-Mail-Args: <a@b>\nReceived: from n1 ([10.213.7.1])\n\tby smtp-sink (smtp-sink) with ESMTP id 1234;\n\tMon, 1 Jan 2030 12:00:00 +0000 (UTC)\nReceived: from x by n1.lifeline.test\nSubject: s\n\nbody\n"
	if got := string(StripSinkHeaders([]byte(dump))); got != "Received: from x by n1.lifeline.test\nSubject: s\n\nbody\n" {
		t.Fatalf("stripped: %q", got)
	}
	if got := string(StripSinkHeaders([]byte("X-A: 1\nReceived: x\n\tby smtp-sink\n\t"))); got != "" {
		t.Fatalf("a dump of headers only: %q", got)
	}
}
