package outbound

import (
	"cmp"
	"context"
	"errors"
	"net"
	"slices"
	"strings"
)

// Resolver is the part of *net.Resolver routing needs; tests pass a fake.
type Resolver interface {
	LookupMX(ctx context.Context, name string) ([]*net.MX, error)
	LookupHost(ctx context.Context, host string) ([]string, error)
}

// Shuffler randomises the order of hosts that share an MX preference.
// *rand.Rand from math/rand/v2 satisfies it; it is called from whatever
// goroutine calls Route, so share one only behind a lock.
type Shuffler interface {
	Shuffle(n int, swap func(i, j int))
}

// Router decides which servers a domain's mail goes to.
type Router struct {
	Resolver Resolver
	// Transport maps a domain to "host:port". The key "*" is a smarthost
	// for every domain without its own entry; with it, MX is never looked
	// up. Keys are matched without regard to case.
	Transport map[string]string
	// Rand, when set, shuffles MX hosts of equal preference (RFC 5321 §5.1
	// lets the client spread load across them). nil keeps the resolver's
	// order, which makes tests deterministic.
	Rand Shuffler
	// Port for MX hosts and transport entries without one; "25" when empty.
	Port string
}

// Route returns "host:port" candidates to try in order.
//
// dest is the domain's delivery destination from the replicated state
// ("host:port", or a host for port 25); when set it wins over everything,
// because that is the operator's statement of where a protected domain's
// server is. Pass "" to route by the transport map, then by DNS.
//
// Errors are *Error: Permanent when the domain cannot receive mail at all
// (null MX, no such domain), temporary when DNS could not answer.
func (r *Router) Route(ctx context.Context, domain, dest string) ([]string, error) {
	if dest != "" {
		return []string{r.withPort(dest)}, nil
	}
	domain = strings.TrimSuffix(strings.ToLower(strings.TrimSpace(domain)), ".")
	if domain == "" {
		return nil, &Error{Reply: Reply{Enhanced: "5.1.2", Text: "no domain to route to"}, Permanent: true}
	}
	if hp, ok := r.transport(domain); ok {
		return []string{r.withPort(hp)}, nil
	}
	if hp, ok := r.transport("*"); ok {
		return []string{r.withPort(hp)}, nil
	}
	// RFC 5321 §4.1.3 address literal, user@[192.0.2.1]: no DNS at all.
	if lit, ok := strings.CutPrefix(domain, "["); ok {
		ip, ok := strings.CutSuffix(lit, "]")
		ip = strings.TrimPrefix(ip, "ipv6:")
		if !ok || net.ParseIP(ip) == nil {
			return nil, &Error{Reply: Reply{Enhanced: "5.1.2", Text: "malformed address literal " + domain}, Permanent: true}
		}
		return []string{net.JoinHostPort(ip, r.port())}, nil
	}
	if r.Resolver == nil {
		return nil, &Error{Reply: Reply{Enhanced: "4.4.3", Text: "no resolver configured to look up " + domain}}
	}

	mxs, err := r.Resolver.LookupMX(ctx, domain)
	// net.Resolver returns the valid records alongside an error when some
	// were malformed; use what is usable.
	if err != nil && len(mxs) == 0 && !notFound(err) {
		return nil, dnsError(ctx, domain, "MX", err)
	}

	var hosts []*net.MX
	nullMX := false
	for _, mx := range mxs {
		h := strings.TrimSuffix(mx.Host, ".")
		if h == "" {
			// RFC 7505 §3: a single MX of "." says the domain accepts no
			// mail. Such a domain must publish no other MX; if it does
			// anyway, the real hosts are still worth trying.
			nullMX = true
			continue
		}
		hosts = append(hosts, &net.MX{Host: strings.ToLower(h), Pref: mx.Pref})
	}
	if len(hosts) == 0 && nullMX {
		// RFC 7505 §4.2 names this reply for a null MX.
		return nil, &Error{
			Reply:     Reply{Code: 556, Enhanced: "5.1.10", Text: domain + " does not accept mail (null MX, RFC 7505)"},
			Permanent: true,
		}
	}

	if len(hosts) == 0 {
		// RFC 5321 §5.1: without MX records the domain itself is the
		// implicit MX, but only if it has an address; otherwise there is
		// nowhere to deliver and never will be.
		addrs, err := r.Resolver.LookupHost(ctx, domain)
		if err != nil && !notFound(err) {
			return nil, dnsError(ctx, domain, "address", err)
		}
		if len(addrs) == 0 {
			return nil, &Error{
				Reply:     Reply{Enhanced: "5.1.2", Text: domain + " has no MX and no address records"},
				Permanent: true,
			}
		}
		return []string{net.JoinHostPort(domain, r.port())}, nil
	}

	// RFC 5321 §5.1: lowest preference first; among equals the order is
	// the client's choice.
	slices.SortStableFunc(hosts, func(a, b *net.MX) int { return cmp.Compare(a.Pref, b.Pref) })
	if r.Rand != nil {
		for i := 0; i < len(hosts); {
			j := i
			for j < len(hosts) && hosts[j].Pref == hosts[i].Pref {
				j++
			}
			group := hosts[i:j]
			r.Rand.Shuffle(len(group), func(a, b int) { group[a], group[b] = group[b], group[a] })
			i = j
		}
	}
	seen := make(map[string]bool, len(hosts))
	out := make([]string, 0, len(hosts))
	for _, mx := range hosts {
		if seen[mx.Host] {
			continue
		}
		seen[mx.Host] = true
		out = append(out, net.JoinHostPort(mx.Host, r.port()))
	}
	return out, nil
}

func (r *Router) transport(domain string) (string, bool) {
	if hp, ok := r.Transport[domain]; ok {
		return hp, true
	}
	for k, hp := range r.Transport {
		if strings.EqualFold(k, domain) {
			return hp, true
		}
	}
	return "", false
}

func (r *Router) port() string {
	if r.Port == "" {
		return "25"
	}
	return r.Port
}

func (r *Router) withPort(hostport string) string {
	hostport = strings.TrimSpace(hostport)
	if _, _, err := net.SplitHostPort(hostport); err == nil {
		return hostport
	}
	return net.JoinHostPort(strings.Trim(hostport, "[]"), r.port())
}

func notFound(err error) bool {
	var de *net.DNSError
	return errors.As(err, &de) && de.IsNotFound
}

func dnsError(ctx context.Context, domain, what string, err error) *Error {
	text := netReply(ctx, err, "", false).Text
	var de *net.DNSError
	if errors.As(err, &de) && ctx.Err() == nil {
		text = de.Err
	}
	// RFC 3463 X.4.3: directory server failure; DNS may answer later.
	return &Error{
		Reply: Reply{Enhanced: "4.4.3", Text: "DNS " + what + " lookup for " + domain + " failed: " + text},
		err:   err,
	}
}
