// Package domains holds the rules for protected domains that the JSON API
// and the organisation console share: which names and destinations are
// valid, how destinations are written in a form, and which destinations a
// domain (or a request for one) has.
package domains

import (
	"fmt"
	"net"
	"strconv"
	"strings"

	"lifeline/fsm"
)

// ValidName accepts an LDH host name of at least two labels, the shape
// RFC 5321 §2.3.5 allows for a mail domain. It returns the name in lower
// case without a trailing dot.
func ValidName(name string) (string, bool) {
	name = strings.ToLower(strings.TrimSuffix(strings.TrimSpace(name), "."))
	if len(name) == 0 || len(name) > 253 {
		return "", false
	}
	labels := strings.Split(name, ".")
	if len(labels) < 2 {
		return "", false
	}
	for _, l := range labels {
		if len(l) == 0 || len(l) > 63 || l[0] == '-' || l[len(l)-1] == '-' {
			return "", false
		}
		for _, c := range l {
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
				return "", false
			}
		}
	}
	return name, true
}

// ValidDestination accepts host:port with a port from 1 to 65535.
func ValidDestination(dest string) bool {
	host, port, err := net.SplitHostPort(dest)
	if err != nil || host == "" || strings.ContainsAny(host, " /\\@") {
		return false
	}
	p, err := strconv.Atoi(port)
	return err == nil && p > 0 && p < 65536
}

// ParseDestinations reads destinations, one per line (or separated by
// commas): HOST:PORT and an optional preference; without one, each gets
// 10 more than the one before, so the order given is the order tried.
func ParseDestinations(text string) ([]fsm.Destination, error) {
	var out []fsm.Destination
	pref := 0
	for _, line := range strings.FieldsFunc(text, func(r rune) bool { return r == '\n' || r == ',' || r == ';' }) {
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		if len(f) > 2 {
			return nil, fmt.Errorf("%q: want HOST:PORT and an optional preference", strings.TrimSpace(line))
		}
		if !ValidDestination(f[0]) {
			return nil, fmt.Errorf("%q is not HOST:PORT", f[0])
		}
		pref += 10
		p := pref
		if len(f) == 2 {
			n, err := strconv.Atoi(f[1])
			if err != nil || n < 0 || n > 65535 {
				return nil, fmt.Errorf("%q: preference must be a number from 0 to 65535", strings.TrimSpace(line))
			}
			p, pref = n, n
		}
		out = append(out, fsm.Destination{Addr: f[0], Pref: p})
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("give at least one destination, HOST:PORT")
	}
	if len(out) > fsm.MaxDestinations {
		return nil, fmt.Errorf("at most %d destinations", fsm.MaxDestinations)
	}
	return out, nil
}

// FormatDestinations is the inverse of ParseDestinations.
func FormatDestinations(ds []fsm.Destination) string {
	var lines []string
	for _, d := range ds {
		lines = append(lines, d.Addr+" "+strconv.Itoa(d.Pref))
	}
	return strings.Join(lines, "\n")
}

// Addrs lists the addresses of ds, for the audit log and the pages.
func Addrs(ds []fsm.Destination) string {
	var a []string
	for _, d := range ds {
		a = append(a, d.Addr)
	}
	return strings.Join(a, ", ")
}

// Targets is what a domain name stands for in the cluster: a protected
// domain, or one an organisation asked for and the operator has not yet
// approved.
type Targets struct {
	Org string
	// Pending is set for a requested domain.
	Pending bool
	// Dests are its destinations in the order they are tried.
	Dests []fsm.Destination
}

// Lookup finds name (lower case) among the protected domains and then the
// requests; found is false when it is neither.
func Lookup(st *fsm.Store, name string) (t Targets, found bool, err error) {
	d, ok, err := st.Domain(name)
	if err != nil {
		return t, false, err
	}
	if ok {
		return Targets{Org: d.Org, Dests: d.Targets()}, true, nil
	}
	rq, ok, err := st.DomainRequestOf(name)
	if err != nil || !ok {
		return t, false, err
	}
	dd := fsm.Domain{Destinations: rq.Destinations}
	return Targets{Org: rq.Org, Pending: true, Dests: dd.Targets()}, true, nil
}
