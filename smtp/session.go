package smtp

import "context"

// mail starts a transaction. The queue ID is chosen here so that DATA can
// put it into the Received: field (RFC 5321 §4.4 "id").
func (s *session) mail(from string, opts mailOptions) *Reply {
	// RFC 1870 §6.2: a declared size over our limit is refused at MAIL.
	if opts.size > s.srv.cfg.MaxMessageBytes {
		return errTooBig
	}
	if err := checkSender(from, opts.utf8); err != nil {
		return err
	}
	// RFC 1870 §6.1: insufficient storage for the declared size (or, with
	// none declared, for any message) is a 452 at MAIL, before the client
	// sends the body; RFC 3463 §3.4 calls it 4.3.1, mail system full.
	if g, ok := s.srv.cfg.Queue.(StorageGauge); ok {
		if err := g.Room(opts.size); err != nil {
			return newReply(452, "4.3.1", "Error: insufficient system storage, try again later")
		}
	}
	s.tx = &Envelope{
		ID:         s.srv.cfg.NewID(),
		From:       from,
		Ret:        opts.ret,   // RFC 3461 §4.3
		EnvID:      opts.envID, // RFC 3461 §4.4, xtext-decoded
		Body:       opts.body,  // RFC 6152
		SMTPUTF8:   opts.utf8,  // RFC 6531 §3.4
		Helo:       s.helo,
		RemoteAddr: s.remoteAddr,
		TLS:        s.tls != nil,
	}
	s.rcptTried = false
	return nil
}

// rcpt adds a recipient. path is the forward path as given, without its
// angle brackets and source route.
func (s *session) rcpt(path string, opts rcptOptions) *Reply {
	tx := s.tx
	if len(tx.Recipients) >= s.srv.cfg.MaxRecipients {
		return newReply(452, "4.5.3", "Error: too many recipients")
	}
	var rcpt Recipient
	if isPostmaster(path) {
		r, err := s.postmaster()
		if err != nil {
			return err
		}
		rcpt = r
		if opts.orcpt == "" {
			// The notice, if any, names what the sender wrote.
			opts.orcpt = "RFC822;postmaster"
		}
	} else {
		r, err := ParseRecipient(path, tx.SMTPUTF8, s.srv.cfg.Queue.Protected)
		if err != nil {
			return err.(*Reply)
		}
		rcpt = r
	}
	rcpt.Notify = opts.notify
	rcpt.ORCPT = opts.orcpt
	// A repeated RCPT is answered 250 but delivered once; the first one's
	// DSN parameters win. Addresses compare as RFC 5321 §2.4 says: the
	// local part exactly (in its canonical form), the domain without case
	// (already lower-cased).
	for _, r := range tx.Recipients {
		if r.Address == rcpt.Address {
			return nil
		}
	}
	tx.Recipients = append(tx.Recipients, rcpt)
	return nil
}

// isPostmaster: RFC 5321 §4.1.1.3 lets "<Postmaster>" stand without a
// domain, and §4.5.1 requires a server to accept it; the name is
// case-insensitive.
func isPostmaster(path string) bool {
	return len(path) == len("postmaster") && equalFoldASCII(path, "postmaster")
}

func equalFoldASCII(a, b string) bool {
	for i := 0; i < len(a); i++ {
		if lower(a[i]) != lower(b[i]) {
			return false
		}
	}
	return true
}

// postmaster resolves the bare postmaster to the mailbox the node routes
// it to (PostmasterRouter), which goes through the same checks as any
// recipient but the protected-domain one: it is the operator's address,
// not the client's choice, so it is no relay.
func (s *session) postmaster() (Recipient, *Reply) {
	pr, ok := s.srv.cfg.Queue.(PostmasterRouter)
	if !ok {
		return Recipient{}, newReply(550, "5.1.1", "<postmaster>: no postmaster mailbox is configured")
	}
	addr, err := pr.Postmaster()
	if err != nil {
		return Recipient{}, errTempFailure
	}
	if addr == "" {
		return Recipient{}, newReply(550, "5.1.1", "<postmaster>: no postmaster mailbox is configured")
	}
	r, rerr := ParseRecipient(addr, true, func(string) (bool, error) { return true, nil })
	if rerr != nil {
		s.srv.log.Error("smtp postmaster address is invalid", "postmaster", addr, "err", rerr)
		return Recipient{}, errTempFailure
	}
	return r, nil
}

// logRefusal hands a refusal to the message log.
func (s *session) logRefusal(stage, id, from string, to []string, err error) {
	if s.srv.cfg.OnRefusal == nil {
		return
	}
	r := Refusal{At: s.srv.cfg.Now(), Stage: stage, QueueID: id, From: from, To: to, Code: 451,
		Text: err.Error(), Remote: s.remote.String(), Helo: s.helo}
	if e, ok := err.(*Reply); ok {
		r.Code = e.Code
		r.Text = e.Text
	}
	s.srv.cfg.OnRefusal(r)
}

// ctxFor bounds a Queue call.
func (s *session) commitContext() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), s.srv.cfg.CommitTimeout)
}
