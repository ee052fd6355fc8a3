package smtp

import (
	"sync"
	"testing"
	"time"

	"lifeline/e2e/kit"
)

// Every refusal reaches the message log with its stage, code and the
// addresses involved.
func TestRefusalsAreReported(t *testing.T) {
	var mu sync.Mutex
	var got []Refusal
	q := newFakeQueue("customer.test")
	ts := startServer(t, q, func(c *Config) {
		c.OnRefusal = func(r Refusal) {
			mu.Lock()
			got = append(got, r)
			mu.Unlock()
		}
	})
	c := ts.dial()
	c.hello()
	c.cmd("MAIL FROM:<sender@example.net>", 250, "")
	c.cmd("RCPT TO:<victim@elsewhere.test>", 554, "5.7.1")
	c.cmd("RCPT TO:<u@customer.test>", 250, "")
	if code, _ := c.data("Subject: x\n\nbare line feeds\r\n.\r\n"); code != 550 {
		t.Fatalf("bare LF: %d", code)
	}
	kit.Wait(t, 5*time.Second, 2*time.Millisecond, "two refusals", func() (bool, error) {
		mu.Lock()
		defer mu.Unlock()
		return len(got) == 2, nil
	})
	mu.Lock()
	defer mu.Unlock()
	r := got[0]
	if r.Stage != "RCPT" || r.Code != 554 || r.From != "sender@example.net" || len(r.To) != 1 || r.To[0] != "victim@elsewhere.test" || r.Remote != "127.0.0.1" {
		t.Fatalf("RCPT refusal: %+v", r)
	}
	r = got[1]
	if r.Stage != "DATA" || r.Code != 550 || r.QueueID == "" || len(r.To) != 1 || r.To[0] != "u@customer.test" {
		t.Fatalf("DATA refusal: %+v", r)
	}
}
