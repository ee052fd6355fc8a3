package outbound

import (
	"context"
	"errors"
	"net"
	"reflect"
	"testing"
)

// fakeResolver answers from maps; a name it does not know does not exist.
type fakeResolver struct {
	mx      map[string][]*net.MX
	mxErr   map[string]error
	hosts   map[string][]string
	hostErr map[string]error
	lookups []string
}

func (f *fakeResolver) LookupMX(ctx context.Context, name string) ([]*net.MX, error) {
	f.lookups = append(f.lookups, "MX "+name)
	if err := f.mxErr[name]; err != nil {
		return nil, err
	}
	if mx, ok := f.mx[name]; ok {
		return mx, nil
	}
	return nil, &net.DNSError{Err: "no such host", Name: name, IsNotFound: true}
}

func (f *fakeResolver) LookupHost(ctx context.Context, host string) ([]string, error) {
	f.lookups = append(f.lookups, "A "+host)
	if err := f.hostErr[host]; err != nil {
		return nil, err
	}
	if a, ok := f.hosts[host]; ok {
		return a, nil
	}
	return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
}

// reverser is a Shuffler whose "randomness" is reversal, so tests can see
// that shuffling stays within one preference.
type reverser struct{}

func (reverser) Shuffle(n int, swap func(i, j int)) {
	for i := 0; i < n/2; i++ {
		swap(i, n-1-i)
	}
}

func TestRouteMXOrder(t *testing.T) {
	res := &fakeResolver{mx: map[string][]*net.MX{"example.com": {
		{Host: "backup.example.com.", Pref: 20},
		{Host: "a.example.com.", Pref: 10},
		{Host: "b.example.com.", Pref: 10},
		{Host: "A.example.com.", Pref: 30}, // duplicate host at a worse preference
		{Host: "c.example.com.", Pref: 10},
	}}}
	r := &Router{Resolver: res}
	got, err := r.Route(context.Background(), "Example.COM.", "")
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"a.example.com:25", "b.example.com:25", "c.example.com:25", "backup.example.com:25"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Route = %v, want %v", got, want)
	}

	r.Rand = reverser{}
	got, _ = r.Route(context.Background(), "example.com", "")
	want = []string{"c.example.com:25", "b.example.com:25", "a.example.com:25", "backup.example.com:25"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("shuffled Route = %v, want %v", got, want)
	}
}

func TestRouteImplicitMX(t *testing.T) {
	res := &fakeResolver{hosts: map[string][]string{"example.net": {"192.0.2.7"}}}
	r := &Router{Resolver: res, Port: "2525"}
	got, err := r.Route(context.Background(), "example.net", "")
	if err != nil || !reflect.DeepEqual(got, []string{"example.net:2525"}) {
		t.Fatalf("Route = %v, %v", got, err)
	}
	if !reflect.DeepEqual(res.lookups, []string{"MX example.net", "A example.net"}) {
		t.Errorf("lookups = %v", res.lookups)
	}
}

func TestRouteFailures(t *testing.T) {
	servfail := &net.DNSError{Err: "server misbehaving", Name: "flaky.example", IsTemporary: true}
	res := &fakeResolver{
		mx: map[string][]*net.MX{
			"nomail.example": {{Host: ".", Pref: 0}},
		},
		mxErr:   map[string]error{"flaky.example": servfail},
		hostErr: map[string]error{"flakya.example": servfail},
	}
	r := &Router{Resolver: res}
	for _, tc := range []struct {
		domain    string
		permanent bool
		code      int
		enh       string
	}{
		{"nomail.example", true, 556, "5.1.10"}, // RFC 7505 null MX
		{"nowhere.example", true, 0, "5.1.2"},   // no MX, no address
		{"flaky.example", false, 0, "4.4.3"},    // DNS failed: try later
		{"flakya.example", false, 0, "4.4.3"},   // MX absent, A lookup failed
	} {
		got, err := r.Route(context.Background(), tc.domain, "")
		var e *Error
		if !errors.As(err, &e) || e.Permanent != tc.permanent || e.Code != tc.code || e.Enhanced != tc.enh || got != nil {
			t.Errorf("Route(%s) = %v, %#v", tc.domain, got, err)
		}
	}
}

func TestRouteTransportAndDestination(t *testing.T) {
	res := &fakeResolver{}
	r := &Router{Resolver: res, Transport: map[string]string{
		"Customer.example": "exchange.customer.example:2525",
		"*":                "smarthost.test",
	}}
	ctx := context.Background()
	for _, tc := range []struct {
		domain, dest string
		want         string
	}{
		{"customer.example", "", "exchange.customer.example:2525"},
		{"anything.example", "", "smarthost.test:25"},
		{"customer.example", "10.0.0.5:25", "10.0.0.5:25"}, // replicated destination wins
		{"customer.example", "mail.customer.example", "mail.customer.example:25"},
	} {
		got, err := r.Route(ctx, tc.domain, tc.dest)
		if err != nil || !reflect.DeepEqual(got, []string{tc.want}) {
			t.Errorf("Route(%q, %q) = %v, %v; want %s", tc.domain, tc.dest, got, err, tc.want)
		}
	}
	if len(res.lookups) != 0 {
		t.Errorf("DNS consulted despite the transport map: %v", res.lookups)
	}

	r = &Router{}
	got, err := r.Route(ctx, "[192.0.2.1]", "")
	if err != nil || !reflect.DeepEqual(got, []string{"192.0.2.1:25"}) {
		t.Errorf("address literal: %v, %v", got, err)
	}
}

func TestSmarthostEndToEnd(t *testing.T) {
	s := newSink(t, sinkOpts{})
	r := &Router{Resolver: &fakeResolver{}, Transport: map[string]string{"*": "smarthost.test:2525"}}
	cands, err := r.Route(context.Background(), "far-away.example", "")
	if err != nil {
		t.Fatal(err)
	}
	d := &mapDialer{m: map[string]string{"smarthost.test:2525": s.addr}}
	cl := testClient()
	cl.Dialer = d
	res := cl.Deliver(context.Background(), cands, &Message{From: "a@example.org", Recipients: rcpts("x@far-away.example"), Open: bodyOf(simpleBody)})
	if res.Recipients[0].Status != Delivered || res.RemoteMTA != "smarthost.test" {
		t.Fatalf("result = %+v", res)
	}
	if !reflect.DeepEqual(d.dialed, []string{"smarthost.test:2525"}) {
		t.Errorf("dialed %v", d.dialed)
	}
}

func TestMXFallbackToNextHost(t *testing.T) {
	s := newSink(t, sinkOpts{})
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := l.Addr().String()
	l.Close()

	r := &Router{Resolver: &fakeResolver{mx: map[string][]*net.MX{"example.com": {
		{Host: "mx2.example.com.", Pref: 20},
		{Host: "mx1.example.com.", Pref: 10},
	}}}}
	cands, err := r.Route(context.Background(), "example.com", "")
	if err != nil {
		t.Fatal(err)
	}
	d := &mapDialer{m: map[string]string{"mx1.example.com:25": dead, "mx2.example.com:25": s.addr}}
	cl := testClient()
	cl.Dialer = d
	res := cl.Deliver(context.Background(), cands, &Message{From: "a@example.org", Recipients: rcpts("x@example.com"), Open: bodyOf(simpleBody)})
	if res.Recipients[0].Status != Delivered || res.RemoteMTA != "mx2.example.com" {
		t.Fatalf("result = %+v", res)
	}
	if !reflect.DeepEqual(d.dialed, []string{"mx1.example.com:25", "mx2.example.com:25"}) {
		t.Errorf("dialed %v", d.dialed)
	}
}
