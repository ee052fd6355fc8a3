package fsm

import (
	"sort"
	"strings"

	bolt "go.etcd.io/bbolt"
)

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
	prev, err := getJSONish[Domain](b, name)
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
	prev, err := getJSONish[DomainRequestRecord](b, name)
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
	rq, err := getJSONish[DomainRequestRecord](tx.Bucket(bucketDomainReqs), c.Name)
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
		p, err := getJSONish[DomainRequestRecord](tx.Bucket(bucketDomainReqs), name)
		if p != nil {
			r, ok = *p, true
		}
		return err
	})
	return r, ok, err
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

// MessagesIn is Messages limited to messages with a recipient in one of
// domains: an organisation's share of the queue. No domains, no messages.
func (s *Store) MessagesIn(domains []string, f MessageFilter, after string, limit int) (out []Message, next string, err error) {
	if len(domains) == 0 {
		return nil, "", nil
	}
	if limit <= 0 {
		limit = 100
	}
	in := map[string]bool{}
	for _, d := range domains {
		in[strings.ToLower(d)] = true
	}
	err = s.view(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketMessages).Cursor()
		var k, v []byte
		if after == "" {
			k, v = c.First()
		} else {
			k, v = c.Seek([]byte(after))
			if k != nil && string(k) == after {
				k, v = c.Next()
			}
		}
		for ; k != nil; k, v = c.Next() {
			var m Message
			if err := decodeValue(v, &m); err != nil {
				return err
			}
			mine := false
			for _, r := range m.Recipients {
				if in[r.Domain] {
					mine = true
					break
				}
			}
			if !mine || !f.match(&m) {
				continue
			}
			if len(out) == limit {
				next = out[len(out)-1].ID
				return nil
			}
			out = append(out, m)
		}
		return nil
	})
	return out, next, err
}
