package outbound

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"syscall"
)

// Reply is what a server answered, or, when no server answered (connection
// refused, timeout, DNS failure), Code 0 and a description in Text.
type Reply struct {
	Code int
	// Enhanced is the RFC 3463 status code ("5.1.1"): the one the server
	// sent (RFC 2034), or for local conditions the one we chose; "" when
	// the server sent none.
	Enhanced string
	// Text is the reply text without codes; the lines of a multi-line
	// reply are joined with "\n".
	Text string
}

// String gives the reply the way an operator reads it and the way RFC 3464
// §2.3.6 wants it after "Diagnostic-Code: smtp;": code, enhanced code,
// text on one line.
func (r Reply) String() string {
	text := strings.Join(strings.Fields(r.Text), " ")
	var parts []string
	if r.Code != 0 {
		parts = append(parts, fmt.Sprint(r.Code))
	}
	if r.Enhanced != "" {
		parts = append(parts, r.Enhanced)
	}
	if text != "" {
		parts = append(parts, text)
	}
	return strings.Join(parts, " ")
}

func (r Reply) ok() bool        { return r.Code >= 200 && r.Code < 300 }
func (r Reply) permanent() bool { return r.Code >= 500 && r.Code < 600 }

// Status is the outcome for one recipient.
type Status int

const (
	// Delivered: the server took responsibility for the message (2xx
	// after the final dot).
	Delivered Status = iota + 1
	// TempFail: 4xx, a network error or a timeout; retry later.
	TempFail
	// PermFail: 5xx or a condition that retrying cannot fix.
	PermFail
)

func (s Status) String() string {
	switch s {
	case Delivered:
		return "delivered"
	case TempFail:
		return "temporary failure"
	case PermFail:
		return "permanent failure"
	}
	return fmt.Sprintf("Status(%d)", int(s))
}

func statusOf(r Reply) Status {
	switch {
	case r.ok():
		return Delivered
	case r.permanent():
		return PermFail
	}
	// 4xx, and codes that make no sense at this point (1xx, 3xx), which
	// say something is wrong with the session, not with the message.
	return TempFail
}

// Error is a failure that hit a whole message rather than one recipient:
// no route, no server reachable, a rejected greeting.
type Error struct {
	Reply
	Permanent bool
	// Host is the server involved, "" when none was (DNS failures).
	Host string
	err  error
}

func (e *Error) Error() string {
	if e.Host == "" || e.Code == 0 && strings.Contains(e.Text, e.Host) {
		return e.describe()
	}
	return e.Host + ": " + e.describe()
}

// describe is the reply with its codes when a server sent it, and just the
// text when it is our own description of a network failure.
func (r Reply) describe() string {
	if r.Code == 0 {
		return r.Text
	}
	return r.String()
}

func (e *Error) Unwrap() error { return e.err }

// protocolError marks a reply we could not parse; the session cannot be
// trusted after it.
type protocolError struct{ msg string }

func (e *protocolError) Error() string { return "malformed reply: " + e.msg }

const (
	// maxReplyLines bounds what a hostile server can make us buffer.
	maxReplyLines = 100
)

// readReply reads one possibly multi-line reply (RFC 5321 §4.2.1). The
// bufio.Reader's size bounds the length of a line.
func readReply(r *bufio.Reader) (Reply, error) {
	var lines []string
	code := 0
	for {
		raw, err := r.ReadSlice('\n')
		if err == bufio.ErrBufferFull {
			return Reply{}, &protocolError{"line too long"}
		}
		if err != nil {
			return Reply{}, err
		}
		line := strings.TrimRight(string(raw), "\r\n")
		if len(line) < 3 || !isDigits(line[:3]) || (len(line) > 3 && line[3] != ' ' && line[3] != '-') {
			return Reply{}, &protocolError{fmt.Sprintf("%q", line)}
		}
		c := int(line[0]-'0')*100 + int(line[1]-'0')*10 + int(line[2]-'0')
		if code != 0 && c != code {
			return Reply{}, &protocolError{fmt.Sprintf("code changed within reply: %q", line)}
		}
		code = c
		text := ""
		if len(line) > 4 {
			text = line[4:]
		}
		lines = append(lines, text)
		if len(line) == 3 || line[3] == ' ' {
			break
		}
		if len(lines) >= maxReplyLines {
			return Reply{}, &protocolError{fmt.Sprintf("more than %d lines", maxReplyLines)}
		}
	}
	rep := Reply{Code: code}
	// RFC 2034 §4: the enhanced code leads every line; its class must
	// match the reply's.
	if enh, _, _ := strings.Cut(lines[0], " "); isEnhanced(enh) && int(enh[0]-'0') == code/100 {
		rep.Enhanced = enh
		for i, l := range lines {
			if rest, ok := strings.CutPrefix(l, enh); ok {
				lines[i] = strings.TrimPrefix(rest, " ")
			}
		}
	}
	rep.Text = strings.Join(lines, "\n")
	return rep, nil
}

func isDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != ""
}

// isEnhanced matches RFC 3463 class "." subject "." detail: class 2, 4 or
// 5, subject and detail one to three digits.
func isEnhanced(s string) bool {
	parts := strings.Split(s, ".")
	if len(parts) != 3 || len(parts[0]) != 1 || strings.IndexByte("245", parts[0][0]) < 0 {
		return false
	}
	for _, p := range parts[1:] {
		if len(p) < 1 || len(p) > 3 || !isDigits(p) {
			return false
		}
	}
	return true
}

// netReply turns an error without an SMTP reply into a Reply an operator
// can read: "connection refused" rather than a wrapped syscall chain.
// RFC 3463: X.4.1 no answer from host, X.4.2 bad connection, X.4.3
// directory (DNS) failure.
func netReply(ctx context.Context, err error, during string, connected bool) Reply {
	enh := "4.4.1"
	if connected {
		enh = "4.4.2"
	}
	var text string
	var dnsErr *net.DNSError
	var protoErr *protocolError
	switch {
	case errors.Is(ctx.Err(), context.DeadlineExceeded):
		text = "timed out"
	case ctx.Err() != nil:
		text = "delivery cancelled: " + context.Cause(ctx).Error()
	case errors.Is(err, syscall.ECONNREFUSED):
		text = "connection refused"
	case errors.Is(err, syscall.ECONNRESET):
		text = "connection reset by server"
	case errors.Is(err, syscall.EHOSTUNREACH), errors.Is(err, syscall.ENETUNREACH):
		text = "host unreachable"
	case errors.Is(err, os.ErrDeadlineExceeded), isTimeout(err):
		text = "timed out"
	case errors.As(err, &dnsErr):
		enh = "4.4.3"
		text = "cannot resolve " + dnsErr.Name + ": " + dnsErr.Err
	case errors.As(err, &protoErr):
		enh = "4.5.0" // RFC 3463 X.5.0 other protocol status
		text = err.Error()
	case errors.Is(err, net.ErrClosed), errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		text = "connection closed by server"
	default:
		text = err.Error()
	}
	if during != "" {
		text += " " + during
	}
	return Reply{Enhanced: enh, Text: text}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
