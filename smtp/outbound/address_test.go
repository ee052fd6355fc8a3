package outbound

import (
	"context"
	"strings"
	"testing"
)

// Quoted local parts go out exactly as stored (RFC 5321 §4.1.2), for the
// sender and the recipients; an address that would break the path is
// refused without being sent.
func TestQuotedAddressesTravelAsStored(t *testing.T) {
	s := newSink(t, sinkOpts{})
	msg := &Message{
		From: `"quoted local"@ext.example`,
		Recipients: []Rcpt{
			{Address: `"john smith"@example.com`},
			{Address: `"a>b\"c"@example.com`},
			{Address: `broken "quote@example.com`},
		},
		Open: bodyOf(simpleBody),
	}
	res := testClient().Deliver(context.Background(), []string{s.addr}, msg)
	if res.Recipients[0].Status != Delivered || res.Recipients[1].Status != Delivered || res.Recipients[2].Status != PermFail {
		t.Fatalf("result = %+v", res)
	}
	trace := s.traced()
	for _, want := range []string{
		"MAIL FROM:<\"quoted local\"@ext.example>\r\n",
		"RCPT TO:<\"john smith\"@example.com>\r\n",
		"RCPT TO:<\"a>b\\\"c\"@example.com>\r\n",
	} {
		if !strings.Contains(trace, want) {
			t.Errorf("the wire lacks %q:\n%s", want, trace)
		}
	}
	if strings.Contains(trace, "broken") {
		t.Errorf("a malformed address was sent:\n%s", trace)
	}
}
