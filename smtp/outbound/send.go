package outbound

import (
	"context"
	"fmt"
	"io"
	"net/textproto"
	"strings"
)

// Message is one transaction: an envelope and a way to read the body.
type Message struct {
	// From is the reverse path; "" sends the null sender MAIL FROM:<>.
	From       string
	Recipients []Rcpt
	// Ret and EnvID are the RFC 3461 §4.3/§4.4 parameters as received
	// (EnvID xtext-decoded); passed on only to servers that offer DSN.
	Ret   string
	EnvID string
	// Size in octets, declared with RFC 1870 SIZE; 0 declares nothing.
	Size int64
	// SMTPUTF8: the envelope or header holds UTF-8 (RFC 6531).
	SMTPUTF8 bool
	// EightBitMIME: the body holds 8-bit data (RFC 6152).
	EightBitMIME bool
	// Open returns the body: RFC 5322 text with CRLF line endings, not
	// dot-stuffed. It is called only once a recipient has been accepted,
	// and the reader is closed before Send returns.
	Open func() (io.ReadCloser, error)
}

// Rcpt is one recipient with its RFC 3461 parameters as received.
type Rcpt struct {
	Address string
	// Notify: NEVER, or any of SUCCESS, FAILURE, DELAY.
	Notify []string
	// ORCPT: "type;address", xtext-decoded, e.g. "rfc822;a@example.com".
	ORCPT string
}

// Result is the outcome of one Send.
type Result struct {
	// RemoteMTA is the server's host name as dialed; "" if none answered.
	RemoteMTA string
	// RemoteDSN: the server offered DSN, so it took over the duty to
	// report. When it did not, RFC 3461 §5.2.2 wants a "relayed" DSN for
	// recipients that asked for NOTIFY=SUCCESS.
	RemoteDSN bool
	// Recipients are in the order of Message.Recipients.
	Recipients []RcptResult
}

// RcptResult is one recipient's outcome and the reply that decided it.
type RcptResult struct {
	Address string
	Status  Status
	Reply
}

func newResult(msg *Message, host string) *Result {
	res := &Result{RemoteMTA: host, Recipients: make([]RcptResult, len(msg.Recipients))}
	for i, r := range msg.Recipients {
		res.Recipients[i].Address = r.Address
	}
	return res
}

// settle gives every recipient without an outcome yet this one: the
// message-wide reply (MAIL, DATA, final dot, a broken connection) decides
// for everyone still waiting.
func (r *Result) settle(st Status, rep Reply) {
	for i := range r.Recipients {
		if r.Recipients[i].Status == 0 {
			r.Recipients[i].Status = st
			r.Recipients[i].Reply = rep
		}
	}
}

func (r *Result) set(i int, st Status, rep Reply) {
	r.Recipients[i].Status = st
	r.Recipients[i].Reply = rep
}

// pipelineWindow bounds how many commands go out before we read replies,
// so that neither side can block writing while the other is not reading.
const pipelineWindow = 50

// Send runs one mail transaction on the session. It never returns without
// an outcome for every recipient. After a network error or a timeout the
// session is closed and every later Send fails temporarily; after a
// rejection it stays usable.
func (c *Conn) Send(ctx context.Context, msg *Message) *Result {
	res := newResult(msg, c.host)
	res.RemoteDSN = c.has("DSN")
	if c.broken != nil {
		res.settle(TempFail, *c.broken)
		return res
	}
	defer c.watch(ctx)()
	netFail := func(err error, during string) {
		rep := netReply(ctx, err, during, true)
		c.fail(rep)
		res.settle(TempFail, rep)
	}
	// RFC 5321 §3.8: 421 means the server is closing the session; its
	// reason is what everyone still waiting gets, not the EOF after it.
	closing := func(rep Reply) {
		c.fail(rep)
		res.settle(TempFail, rep)
	}
	if msg.Open == nil {
		res.settle(TempFail, Reply{Enhanced: "4.3.0", Text: "message has no body"})
		return res
	}

	if c.inTx {
		rep, err := c.cmd(ctx, c.t.Command, "RSET")
		if err != nil {
			netFail(err, "during RSET")
			return res
		}
		if !rep.ok() {
			// A server that will not reset cannot be trusted with the
			// next transaction.
			closing(rep)
			return res
		}
		c.inTx = false
	}

	if !validPath(msg.From) {
		res.settle(PermFail, Reply{Enhanced: "5.1.7", Text: fmt.Sprintf("invalid sender address %q", msg.From)})
		return res
	}
	needUTF8 := msg.SMTPUTF8 || !isASCII(msg.From)
	for _, r := range msg.Recipients {
		needUTF8 = needUTF8 || !isASCII(r.Address)
	}
	if needUTF8 && !c.has("SMTPUTF8") {
		// RFC 6531: such a message must not go to a server without
		// SMTPUTF8, and we do not downgrade.
		res.settle(PermFail, Reply{Enhanced: "5.6.7", Text: c.host + " does not support SMTPUTF8, which this message needs"})
		return res
	}
	if msg.EightBitMIME && !c.has("8BITMIME") {
		// RFC 6152: 8-bit data must not go to a server without 8BITMIME;
		// we do not convert to 7 bit.
		res.settle(PermFail, Reply{Enhanced: "5.6.3", Text: c.host + " does not support 8BITMIME, which this message needs"})
		return res
	}
	if limit := c.maxSize(); limit > 0 && msg.Size > limit {
		// RFC 1870 §4: the server has told us it will refuse this size
		// permanently; do not send it to find out.
		res.settle(PermFail, Reply{Code: 552, Enhanced: "5.3.4",
			Text: fmt.Sprintf("message of %d octets exceeds the %d octets %s accepts", msg.Size, limit, c.host)})
		return res
	}

	// cmds[k] for k > 0 is the RCPT of msg.Recipients[rcpts[k-1]].
	cmds := []string{c.mailCommand(msg, needUTF8)}
	var rcpts []int
	for i, r := range msg.Recipients {
		if r.Address == "" || !validPath(r.Address) {
			res.set(i, PermFail, Reply{Enhanced: "5.1.3", Text: fmt.Sprintf("invalid recipient address %q", r.Address)})
			continue
		}
		rcpts = append(rcpts, i)
		cmds = append(cmds, c.rcptCommand(r))
	}
	if len(rcpts) == 0 {
		return res
	}

	// RFC 2920: with PIPELINING, MAIL and the RCPTs go out together and
	// their replies come back in order. Without it, one at a time.
	window := 1
	if c.has("PIPELINING") {
		window = pipelineWindow
	}
	c.inTx = true
	var mailRep *Reply
	accepted := 0
	for start := 0; start < len(cmds) && mailRep == nil; start += window {
		end := min(start+window, len(cmds))
		c.deadline(ctx, c.t.Mail)
		for _, line := range cmds[start:end] {
			if err := c.writeLine(line); err != nil {
				netFail(err, "sending the envelope")
				return res
			}
		}
		if err := c.w.Flush(); err != nil {
			netFail(err, "sending the envelope")
			return res
		}
		for k := start; k < end; k++ {
			during := "waiting for the reply to RCPT TO"
			if k == 0 {
				during = "waiting for the reply to MAIL FROM"
				c.deadline(ctx, c.t.Mail)
			} else {
				c.deadline(ctx, c.t.Rcpt)
			}
			rep, err := readReply(c.r)
			if err != nil {
				netFail(err, during)
				return res
			}
			if rep.Code == 421 {
				closing(rep)
				return res
			}
			switch {
			case k == 0:
				if !rep.ok() {
					mailRep = &rep
				}
			case mailRep != nil:
				// Pipelined RCPTs after a refused MAIL are refused for that
				// reason; their own replies (503) say nothing new.
			case rep.ok():
				accepted++
			case rep.Code == 552:
				// RFC 5321 §4.5.3.1.10: 552 to RCPT is the old "too many
				// recipients" and is to be treated as temporary.
				res.set(rcpts[k-1], TempFail, rep)
			default:
				res.set(rcpts[k-1], statusOf(rep), rep)
			}
		}
	}
	if mailRep != nil {
		// A refused MAIL decides for every recipient: 5xx fails them all
		// permanently, 4xx defers them all.
		res.settle(statusOf(*mailRep), *mailRep)
		return res
	}
	if accepted == 0 {
		return res
	}

	body, err := msg.Open()
	if err != nil {
		res.settle(TempFail, Reply{Enhanced: "4.3.0", Text: "cannot read the message from the spool: " + err.Error()})
		return res
	}
	defer body.Close()

	rep, err := c.cmd(ctx, c.t.DataInit, "DATA")
	if err != nil {
		netFail(err, "waiting for the reply to DATA")
		return res
	}
	if rep.Code == 421 {
		closing(rep)
		return res
	}
	if rep.Code != 354 {
		st := statusOf(rep)
		if st == Delivered {
			st = TempFail // a 2xx to DATA is a confused server, not a delivery
		}
		res.settle(st, rep)
		return res
	}

	// The stdlib's dot writer does RFC 5321 §4.5.2 transparency and ends
	// the data with CRLF "." CRLF.
	dw := textproto.NewWriter(c.w).DotWriter()
	buf := make([]byte, 32*1024)
	for {
		n, rerr := body.Read(buf)
		if n > 0 {
			c.deadline(ctx, c.t.DataBlock)
			if _, err := dw.Write(buf[:n]); err != nil {
				netFail(err, "sending the message")
				return res
			}
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			// SMTP has no way to abandon DATA; dropping the connection is
			// the only way to keep the server from delivering a truncated
			// message.
			rep := Reply{Enhanced: "4.3.0", Text: "cannot read the message from the spool: " + rerr.Error()}
			c.fail(rep)
			res.settle(TempFail, rep)
			return res
		}
	}
	c.deadline(ctx, c.t.DataBlock)
	if err := dw.Close(); err != nil {
		netFail(err, "sending the message")
		return res
	}
	c.deadline(ctx, c.t.DataTerm)
	rep, err = readReply(c.r)
	if err != nil {
		// The server may have taken the message without our hearing so;
		// retrying risks a duplicate, which at-least-once delivery allows
		// (RFC 5321 §4.5.3.2.6 is why this timeout is long).
		netFail(err, "waiting for the reply to the end of data")
		return res
	}
	if rep.Code == 421 {
		closing(rep)
		return res
	}
	res.settle(statusOf(rep), rep)
	return res
}

func (c *Conn) mailCommand(msg *Message, utf8 bool) string {
	var b strings.Builder
	b.WriteString("MAIL FROM:<" + msg.From + ">")
	if msg.EightBitMIME {
		b.WriteString(" BODY=8BITMIME") // RFC 6152
	}
	if utf8 {
		b.WriteString(" SMTPUTF8") // RFC 6531
	}
	if msg.Size > 0 && c.has("SIZE") {
		fmt.Fprintf(&b, " SIZE=%d", msg.Size) // RFC 1870
	}
	// RFC 3461 §5.2.2: to a server without DSN the parameters are
	// dropped; sending them would get the transaction refused.
	if c.has("DSN") {
		if ret := strings.ToUpper(msg.Ret); ret == "FULL" || ret == "HDRS" {
			b.WriteString(" RET=" + ret)
		}
		// RFC 3461 §4.4: printable ASCII, at most 100 characters.
		if msg.EnvID != "" && len(msg.EnvID) <= 100 && isPrintableASCII(msg.EnvID) {
			b.WriteString(" ENVID=" + xtext(msg.EnvID))
		}
	}
	return b.String()
}

func (c *Conn) rcptCommand(r Rcpt) string {
	var b strings.Builder
	b.WriteString("RCPT TO:<" + r.Address + ">")
	if c.has("DSN") {
		if n := notifyParam(r.Notify); n != "" {
			b.WriteString(" NOTIFY=" + n)
		}
		if o := orcptParam(r.ORCPT); o != "" {
			b.WriteString(" ORCPT=" + o)
		}
	}
	return b.String()
}

// validPath rejects what would break the command line or the angle
// brackets around the path; everything else is the server's to judge. A
// quoted local part (RFC 5321 §4.1.2) may hold spaces and angle brackets
// and goes out exactly as stored.
func validPath(s string) bool {
	inQuote := false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c < 0x20 || c == 0x7f:
			return false
		case inQuote && c == '\\':
			i++
		case c == '"':
			inQuote = !inQuote
		case !inQuote && (c == '<' || c == '>' || c == ' '):
			return false
		}
	}
	return !inQuote
}
