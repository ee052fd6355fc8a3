package fsm

import (
	"sort"
	"strings"

	bolt "go.etcd.io/bbolt"
)

// A protected domain is one whose mail the MX accepts and the spool
// delivers. DomainPut and DomainSet protect one; an organisation may also
// ask for one (DomainRequest), which protects nothing until the operator
// approves it.

// Domain is a protected domain: mail for it is accepted and delivered to
// Destination.
type Domain struct {
	Name        string `codec:"n" json:"name"`
	Destination string `codec:"d" json:"destination"`
	Org         string `codec:"o" json:"org,omitempty"`
	CreatedAt   int64  `codec:"c" json:"-"`
	UpdatedAt   int64  `codec:"u" json:"-"`
	// Spooling is set while the destination keeps failing; SpoolingSince
	// says when it started and LastError what the destination last said.
	Spooling      bool   `codec:"sp,omitempty" json:"spooling"`
	SpoolingSince int64  `codec:"ss,omitempty" json:"-"`
	LastError     string `codec:"le,omitempty" json:"last_error,omitempty"`
	// LastDelivered is when mail last reached the destination.
	LastDelivered int64 `codec:"ld,omitempty" json:"-"`
	// Destinations, when set (DomainSet), are tried in order of
	// preference; Destination is then the most preferred of them.
	Destinations []Destination `codec:"ds,omitempty" json:"destinations,omitempty"`
}

// Destination is one of a domain's delivery destinations. Lower Pref is
// tried first, like an MX preference (RFC 5321 §5.1); equal preferences
// keep the order they were given in.
type Destination struct {
	Addr string `codec:"a" json:"addr"`
	Pref int    `codec:"p" json:"pref"`
}

// MaxDestinations bounds a domain's destinations.
const MaxDestinations = 10

// Targets lists where the domain's mail goes, in the order to try them:
// its destinations by preference, or the single Destination of a domain
// set with DomainPut.
func (d *Domain) Targets() []Destination {
	if len(d.Destinations) == 0 {
		if d.Destination == "" {
			return nil
		}
		return []Destination{{Addr: d.Destination, Pref: 10}}
	}
	out := append([]Destination(nil), d.Destinations...)
	sort.SliceStable(out, func(i, j int) bool { return out[i].Pref < out[j].Pref })
	return out
}

// DomainPut creates or updates a protected domain.
type DomainPut struct {
	Name        string `codec:"n"`
	Destination string `codec:"d"`
	Org         string `codec:"o"`
	At          int64  `codec:"t"` // unix nanoseconds, decided by the proposer
}

// DomainRemove stops protecting a domain. Mail already spooled stays.
type DomainRemove struct {
	Name string `codec:"n"`
}

// DomainSet creates (Create) or changes a protected domain with one or
// more destinations. It keeps the domain's spooling state. Destination,
// the single field older readers know, becomes the most preferred one.
type DomainSet struct {
	Name         string        `codec:"n"`
	Org          string        `codec:"o,omitempty"`
	Destinations []Destination `codec:"ds"`
	Create       bool          `codec:"c,omitempty"`
	At           int64         `codec:"t"`
}

func checkDestinations(ds []Destination) error {
	if len(ds) == 0 || len(ds) > MaxDestinations {
		return &ValidationError{Msg: "a domain needs 1 to 10 destinations"}
	}
	seen := map[string]bool{}
	for _, d := range ds {
		if d.Addr == "" || len(d.Addr) > 300 || strings.ContainsAny(d.Addr, " \t\r\n/@") {
			return &ValidationError{Msg: "invalid destination " + d.Addr}
		}
		if d.Pref < 0 || d.Pref > 65535 {
			return &ValidationError{Msg: "preference must be between 0 and 65535"}
		}
		if seen[d.Addr] {
			return &ValidationError{Msg: "destination listed twice: " + d.Addr}
		}
		seen[d.Addr] = true
	}
	return nil
}

func primary(ds []Destination) string {
	d := Domain{Destinations: ds}
	if t := d.Targets(); len(t) > 0 {
		return t[0].Addr
	}
	return ""
}

func applyDomainPut(tx *bolt.Tx, c *DomainPut) error {
	name := strings.ToLower(c.Name)
	if name == "" || name != c.Name {
		return &ValidationError{Msg: "domain name must be lower case and not empty"}
	}
	b := tx.Bucket(bucketDomains)
	d := Domain{Name: name, Destination: c.Destination, Org: c.Org, CreatedAt: c.At, UpdatedAt: c.At}
	if old := b.Get([]byte(name)); old != nil {
		var prev Domain
		if err := decodeValue(old, &prev); err != nil {
			return err
		}
		d.CreatedAt = prev.CreatedAt
		d.Spooling, d.SpoolingSince, d.LastError, d.LastDelivered = prev.Spooling, prev.SpoolingSince, prev.LastError, prev.LastDelivered
	}
	v, err := encodeValue(&d)
	if err != nil {
		return err
	}
	return b.Put([]byte(name), v)
}

func applyDomainRemove(tx *bolt.Tx, c *DomainRemove) error {
	b := tx.Bucket(bucketDomains)
	if b.Get([]byte(c.Name)) == nil {
		return &ValidationError{Msg: "no such domain: " + c.Name}
	}
	return b.Delete([]byte(c.Name))
}

func applyDomainSet(tx *bolt.Tx, c *DomainSet) error {
	name := strings.ToLower(c.Name)
	if name == "" || name != c.Name {
		return &ValidationError{Msg: "domain name must be lower case and not empty"}
	}
	if err := checkDestinations(c.Destinations); err != nil {
		return err
	}
	if c.Org != "" && tx.Bucket(bucketOrgs).Get([]byte(c.Org)) == nil {
		return &ValidationError{Msg: "no such organisation: " + c.Org}
	}
	b := tx.Bucket(bucketDomains)
	prev, err := getValue[Domain](b, name)
	if err != nil {
		return err
	}
	switch {
	case prev != nil && c.Create:
		return &ValidationError{Msg: "domain already exists: " + name}
	case prev == nil && !c.Create:
		return &ValidationError{Msg: "no such domain: " + name}
	}
	d := Domain{Name: name, CreatedAt: c.At}
	if prev != nil {
		d = *prev
	}
	d.Org = c.Org
	d.Destinations = append([]Destination(nil), c.Destinations...)
	d.Destination = primary(d.Destinations)
	d.UpdatedAt = c.At
	if err := putValue(b, name, &d); err != nil {
		return err
	}
	// A protected domain is no longer waiting for approval.
	return tx.Bucket(bucketDomainReqs).Delete([]byte(name))
}

// DomainRequestRecord is a domain an organisation asked to protect. It is
// not protected (the MX refuses its mail, nothing is routed by it) until
// the operator approves it: a domain protected for one tenant captures
// the mail every other tenant writes to it, so claims need a check.
type DomainRequestRecord struct {
	Name         string        `codec:"n" json:"name"`
	Org          string        `codec:"o" json:"org"`
	Destinations []Destination `codec:"ds" json:"destinations"`
	RequestedBy  string        `codec:"b,omitempty" json:"requested_by,omitempty"`
	At           int64         `codec:"t" json:"-"`
}

// DomainRequest records (or updates) an organisation's request to
// protect a domain.
type DomainRequest struct {
	Name         string        `codec:"n"`
	Org          string        `codec:"o"`
	Destinations []Destination `codec:"ds"`
	By           string        `codec:"b,omitempty"`
	At           int64         `codec:"t"`
}

// ErrDomainUnavailable is the message for a domain that some other
// organisation holds or asked for; it names neither.
const ErrDomainUnavailable = "this domain cannot be added; contact your service provider"

func applyDomainRequest(tx *bolt.Tx, c *DomainRequest) error {
	name := strings.ToLower(c.Name)
	if name == "" || name != c.Name {
		return &ValidationError{Msg: "domain name must be lower case and not empty"}
	}
	if err := checkDestinations(c.Destinations); err != nil {
		return err
	}
	if tx.Bucket(bucketOrgs).Get([]byte(c.Org)) == nil {
		return &ValidationError{Msg: "no such organisation: " + c.Org}
	}
	if tx.Bucket(bucketDomains).Get([]byte(name)) != nil {
		return &ValidationError{Msg: ErrDomainUnavailable}
	}
	b := tx.Bucket(bucketDomainReqs)
	prev, err := getValue[DomainRequestRecord](b, name)
	if err != nil {
		return err
	}
	if prev != nil && prev.Org != c.Org {
		return &ValidationError{Msg: ErrDomainUnavailable}
	}
	return putValue(b, name, &DomainRequestRecord{Name: name, Org: c.Org, Destinations: c.Destinations, RequestedBy: c.By, At: c.At})
}

// DomainApprove turns a request into a protected domain of the
// requesting organisation.
type DomainApprove struct {
	Name string `codec:"n"`
	At   int64  `codec:"t"`
}

func applyDomainApprove(tx *bolt.Tx, c *DomainApprove) error {
	rq, err := getValue[DomainRequestRecord](tx.Bucket(bucketDomainReqs), c.Name)
	if err != nil {
		return err
	}
	if rq == nil {
		return &ValidationError{Msg: "no request for domain " + c.Name}
	}
	return applyDomainSet(tx, &DomainSet{Name: rq.Name, Org: rq.Org, Destinations: rq.Destinations, Create: true, At: c.At})
}

// DomainRequestDelete withdraws (or refuses) a request.
type DomainRequestDelete struct {
	Name string `codec:"n"`
}

func applyDomainRequestDelete(tx *bolt.Tx, c *DomainRequestDelete) error {
	b := tx.Bucket(bucketDomainReqs)
	if b.Get([]byte(c.Name)) == nil {
		return &ValidationError{Msg: "no request for domain " + c.Name}
	}
	return b.Delete([]byte(c.Name))
}

// Domain returns the named domain; ok is false when it is not protected.
// name must already be lower case.
func (s *Store) Domain(name string) (d Domain, ok bool, err error) {
	err = s.view(func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketDomains).Get([]byte(name))
		if v == nil {
			return nil
		}
		ok = true
		return decodeValue(v, &d)
	})
	return d, ok, err
}

// Domains lists every protected domain in name order.
func (s *Store) Domains() ([]Domain, error) {
	var out []Domain
	err := s.view(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketDomains).ForEach(func(_, v []byte) error {
			var d Domain
			if err := decodeValue(v, &d); err != nil {
				return err
			}
			out = append(out, d)
			return nil
		})
	})
	return out, err
}

// OrgDomains lists the protected domains of org in name order.
func (s *Store) OrgDomains(org string) ([]Domain, error) {
	all, err := s.Domains()
	if err != nil {
		return nil, err
	}
	var out []Domain
	for _, d := range all {
		if d.Org == org {
			out = append(out, d)
		}
	}
	return out, nil
}

// DomainRequests lists pending requests, of org or of every organisation
// when org is "".
func (s *Store) DomainRequests(org string) ([]DomainRequestRecord, error) {
	var out []DomainRequestRecord
	err := s.view(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketDomainReqs).ForEach(func(_, v []byte) error {
			var r DomainRequestRecord
			if err := decodeValue(v, &r); err != nil {
				return err
			}
			if org == "" || r.Org == org {
				out = append(out, r)
			}
			return nil
		})
	})
	return out, err
}

// DomainRequestOf returns one pending request.
func (s *Store) DomainRequestOf(name string) (r DomainRequestRecord, ok bool, err error) {
	err = s.view(func(tx *bolt.Tx) error {
		p, err := getValue[DomainRequestRecord](tx.Bucket(bucketDomainReqs), name)
		if p != nil {
			r, ok = *p, true
		}
		return err
	})
	return r, ok, err
}
