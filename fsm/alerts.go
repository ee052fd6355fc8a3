package fsm

import (
	"encoding/binary"
	"net/url"

	bolt "go.etcd.io/bbolt"
)

// Spooling alerts. The leader decides that an alert is due (a domain
// started spooling, is still spooling, or has drained) and proposes one
// AlertFire. Apply records the event in the domain's AlertEpisode and, in
// the same transaction, queues the alert emails and puts the SMS messages
// in an outbox. A second AlertFire for the same event (a new leader that
// decided the same, or a retried proposal) finds the event recorded and
// changes nothing, so emails are queued exactly once. SMS leave the outbox
// through the leader, which records each as done after the gateway took
// it; a leader that dies between the gateway's answer and that record
// leaves the message pending, and its successor sends it again with the
// same Idempotency-Key (at least once, deduplicated by gateways that
// honour the key).

// Alert kinds.
const (
	AlertSpooling = "spooling"
	AlertReminder = "reminder"
	AlertDrained  = "drained"
)

// Alert recipients and channels.
const (
	AlertToAdmin = "admin"
	AlertToTech  = "tech"
	AlertToBoth  = "both"
	AlertByEmail = "email"
	AlertBySMS   = "sms"
	AlertByBoth  = "both"
)

// Contact is a person alerts go to.
type Contact struct {
	Name   string `codec:"n,omitempty" json:"name,omitempty"`
	Email  string `codec:"e,omitempty" json:"email,omitempty"`
	Mobile string `codec:"m,omitempty" json:"mobile,omitempty"`
}

// AlertSettings are an organisation's spooling alerts.
type AlertSettings struct {
	Enabled bool `codec:"on,omitempty" json:"enabled"`
	// To is admin, tech or both; Via is email, sms or both.
	To  string `codec:"to,omitempty" json:"to"`
	Via string `codec:"via,omitempty" json:"via"`
	// RepeatEvery is how often a reminder goes out while a domain keeps
	// spooling (nanoseconds); 0 sends none.
	RepeatEvery int64   `codec:"rp,omitempty" json:"repeat_every_ns"`
	Admin       Contact `codec:"a,omitempty" json:"admin"`
	Tech        Contact `codec:"t,omitempty" json:"tech"`
}

// Recipients are the contacts an alert goes to.
func (a *AlertSettings) Recipients() []Contact {
	switch a.To {
	case AlertToAdmin:
		return []Contact{a.Admin}
	case AlertToTech:
		return []Contact{a.Tech}
	}
	return []Contact{a.Admin, a.Tech}
}

// ByEmail and BySMS say which channels are on.
func (a *AlertSettings) ByEmail() bool { return a.Via != AlertBySMS }
func (a *AlertSettings) BySMS() bool   { return a.Via == AlertBySMS || a.Via == AlertByBoth }

// DefaultAlertRepeat is the reminder interval of an organisation that
// never chose one.
const DefaultAlertRepeat = int64(4 * 3600 * 1e9)

// ValidMobile accepts an E.164-like number: + and 6 to 15 digits.
func ValidMobile(m string) bool {
	if len(m) < 7 || len(m) > 16 || m[0] != '+' {
		return false
	}
	for _, r := range m[1:] {
		if r < '0' || r > '9' {
			return false
		}
	}
	return true
}

func checkAlerts(a *AlertSettings) error {
	switch a.To {
	case AlertToAdmin, AlertToTech, AlertToBoth:
	default:
		return &ValidationError{Msg: "alerts go to admin, tech or both"}
	}
	switch a.Via {
	case AlertByEmail, AlertBySMS, AlertByBoth:
	default:
		return &ValidationError{Msg: "alerts go by email, sms or both"}
	}
	if a.RepeatEvery < 0 {
		return &ValidationError{Msg: "repeat interval cannot be negative"}
	}
	for _, c := range []Contact{a.Admin, a.Tech} {
		if c.Email != "" && !ValidEmail(c.Email) {
			return &ValidationError{Msg: "invalid contact email address: " + c.Email}
		}
		if c.Mobile != "" && !ValidMobile(c.Mobile) {
			return &ValidationError{Msg: "mobile numbers are + and 6 to 15 digits, e.g. +447700900123: " + c.Mobile}
		}
		if c.Name != "" && !validName(c.Name, 200) {
			return &ValidationError{Msg: "contact name must be at most 200 printable characters"}
		}
	}
	if a.Enabled {
		for _, c := range a.Recipients() {
			if a.ByEmail() && c.Email == "" || a.BySMS() && c.Mobile == "" {
				return &ValidationError{Msg: "alerts are on: every contact they go to needs an email address and a mobile number for the channels chosen"}
			}
		}
	}
	return nil
}

// SMSGateway is the cluster's HTTP gateway for SMS, set by the operator:
// a POST of the form fields `to` and `text` (and `from` when set) to URL,
// with HTTP basic authentication when User is set.
type SMSGateway struct {
	URL      string `codec:"u" json:"url"`
	User     string `codec:"us,omitempty" json:"user,omitempty"`
	Password string `codec:"pw,omitempty" json:"-"`
	From     string `codec:"f,omitempty" json:"from,omitempty"`
}

// SMSGatewaySet replaces the gateway; an empty URL removes it.
type SMSGatewaySet struct {
	Gateway SMSGateway `codec:"g"`
}

func applySMSGatewaySet(tx *bolt.Tx, c *SMSGatewaySet) error {
	meta := tx.Bucket(bucketMeta)
	if c.Gateway.URL == "" {
		return meta.Delete(keySMSGateway)
	}
	u, err := url.Parse(c.Gateway.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || len(c.Gateway.URL) > 1000 {
		return &ValidationError{Msg: "the SMS gateway URL must be http:// or https://"}
	}
	v, err := encodeValue(&c.Gateway)
	if err != nil {
		return err
	}
	return meta.Put(keySMSGateway, v)
}

// SMSGatewayConfig returns the gateway; ok is false when none is set.
func (s *Store) SMSGatewayConfig() (g SMSGateway, ok bool, err error) {
	err = s.view(func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketMeta).Get(keySMSGateway)
		if v == nil {
			return nil
		}
		ok = true
		return decodeValue(v, &g)
	})
	return g, ok, err
}

// AlertEpisode is what has been sent about one spell of spooling of one
// domain; Since is when the domain started spooling.
type AlertEpisode struct {
	Domain    string `codec:"d" json:"domain"`
	Org       string `codec:"o" json:"org"`
	Since     int64  `codec:"s" json:"since"`
	StartSent bool   `codec:"ss,omitempty" json:"start_sent"`
	StartAt   int64  `codec:"sa,omitempty" json:"start_at,omitempty"`
	Repeats   int    `codec:"r,omitempty" json:"repeats,omitempty"`
	LastAt    int64  `codec:"la,omitempty" json:"last_at,omitempty"`
	DrainSent bool   `codec:"ds,omitempty" json:"drain_sent"`
	DrainAt   int64  `codec:"da,omitempty" json:"drain_at,omitempty"`
}

// AlertSMS is one SMS an AlertFire puts in the outbox. Key is unique per
// event and number; it travels to the gateway as the Idempotency-Key.
type AlertSMS struct {
	Key  string `codec:"k"`
	To   string `codec:"to"`
	Text string `codec:"tx"`
}

// SMSMessage is an SMS in the outbox.
type SMSMessage struct {
	Key       string `codec:"k" json:"key"`
	Org       string `codec:"o" json:"org"`
	Domain    string `codec:"d" json:"domain"`
	Kind      string `codec:"kd" json:"kind"`
	To        string `codec:"to" json:"to"`
	Text      string `codec:"tx" json:"text"`
	CreatedAt int64  `codec:"c" json:"created_at"`
	DoneAt    int64  `codec:"da,omitempty" json:"done_at,omitempty"`
	// Error is set when the gateway never took it.
	Error string `codec:"e,omitempty" json:"error,omitempty"`
}

// AlertFire records that an alert event is sent and queues what it sends.
// N numbers reminders within an episode (1, 2, ...).
type AlertFire struct {
	Domain string            `codec:"d"`
	Org    string            `codec:"o"`
	Since  int64             `codec:"s"`
	Kind   string            `codec:"k"`
	N      int               `codec:"n,omitempty"`
	At     int64             `codec:"t"`
	Mails  []SpoolAddSummary `codec:"m,omitempty"`
	SMS    []AlertSMS        `codec:"sms,omitempty"`
}

// SMSKeep is how long finished SMS stay in the outbox, for the console.
const SMSKeep = int64(30 * 24 * 3600 * 1e9)

func applyAlertFire(tx *bolt.Tx, c *AlertFire) error {
	if c.Domain == "" || c.Since == 0 {
		return &ValidationError{Msg: "an alert needs a domain and the start of its spooling"}
	}
	b := tx.Bucket(bucketAlertEpisodes)
	ep, err := getValue[AlertEpisode](b, c.Domain)
	if err != nil {
		return err
	}
	switch {
	case ep == nil || c.Since > ep.Since:
		ep = &AlertEpisode{Domain: c.Domain, Org: c.Org, Since: c.Since}
	case c.Since < ep.Since:
		return nil // about a spell that is over; a newer one is recorded
	}
	switch c.Kind {
	case AlertSpooling:
		if ep.StartSent {
			return nil
		}
		ep.StartSent, ep.StartAt, ep.LastAt = true, c.At, c.At
	case AlertReminder:
		if c.N <= ep.Repeats {
			return nil
		}
		ep.Repeats, ep.LastAt = c.N, c.At
	case AlertDrained:
		if ep.DrainSent {
			return nil
		}
		ep.DrainSent, ep.DrainAt = true, c.At
	default:
		return &ValidationError{Msg: "unknown alert kind " + c.Kind}
	}
	for i := range c.Mails {
		if err := applySpoolAddSummary(tx, &c.Mails[i]); err != nil {
			return err
		}
	}
	out := tx.Bucket(bucketSMSOutbox)
	for _, m := range c.SMS {
		msg := SMSMessage{Key: m.Key, Org: c.Org, Domain: c.Domain, Kind: c.Kind, To: m.To, Text: m.Text, CreatedAt: c.At}
		if err := putValue(out, string(smsKey(c.At, m.Key)), &msg); err != nil {
			return err
		}
	}
	// Forget a few finished messages past SMSKeep.
	var old [][]byte
	cur := out.Cursor()
	for k, v := cur.First(); k != nil && len(old) < 16; k, v = cur.Next() {
		if len(k) < 8 || int64(binary.BigEndian.Uint64(k)) >= c.At-SMSKeep {
			break
		}
		var m SMSMessage
		if err := decodeValue(v, &m); err == nil && m.DoneAt != 0 {
			old = append(old, append([]byte(nil), k...))
		}
	}
	for _, k := range old {
		if err := out.Delete(k); err != nil {
			return err
		}
	}
	return putValue(b, c.Domain, ep)
}

// AlertSMSDone takes an SMS out of the pending outbox: sent, or given up
// with Error.
type AlertSMSDone struct {
	Key       string `codec:"k"`
	CreatedAt int64  `codec:"c"`
	At        int64  `codec:"t"`
	Error     string `codec:"e,omitempty"`
}

func applyAlertSMSDone(tx *bolt.Tx, c *AlertSMSDone) error {
	out := tx.Bucket(bucketSMSOutbox)
	k := smsKey(c.CreatedAt, c.Key)
	m, err := getValue[SMSMessage](out, string(k))
	if err != nil || m == nil || m.DoneAt != 0 {
		return err
	}
	m.DoneAt, m.Error = c.At, c.Error
	if len(m.Error) > 500 {
		m.Error = m.Error[:500]
	}
	return putValue(out, string(k), m)
}

// AlertEpisodeOf returns the latest episode of a domain.
func (s *Store) AlertEpisodeOf(domain string) (ep AlertEpisode, ok bool, err error) {
	err = s.view(func(tx *bolt.Tx) error {
		p, err := getValue[AlertEpisode](tx.Bucket(bucketAlertEpisodes), domain)
		if p != nil {
			ep, ok = *p, true
		}
		return err
	})
	return ep, ok, err
}

// SMSOutbox lists SMS messages, oldest first: only pending ones, or the
// latest `limit` of an organisation ("" for all) when pending is false.
func (s *Store) SMSOutbox(pending bool, org string, limit int) ([]SMSMessage, error) {
	var out []SMSMessage
	err := s.view(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketSMSOutbox).Cursor()
		for k, v := c.First(); k != nil; k, v = c.Next() {
			var m SMSMessage
			if err := decodeValue(v, &m); err != nil {
				return err
			}
			if pending && m.DoneAt != 0 || org != "" && m.Org != org {
				continue
			}
			out = append(out, m)
		}
		return nil
	})
	if limit > 0 && len(out) > limit {
		out = out[len(out)-limit:]
	}
	return out, err
}
