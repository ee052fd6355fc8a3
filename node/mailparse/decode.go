package mailparse

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"strings"
)

// transferDecoder undoes a Content-Transfer-Encoding (RFC 2045 §6)
// leniently: damaged base64 or quoted-printable gives what can be read of
// it, never an error. Any other encoding (7bit, 8bit, binary, and the
// unknown, which RFC 2045 §6.4 says to treat as opaque data) is handed on
// as it is, so the part can still be downloaded.
func transferDecoder(enc string, r io.Reader) io.Reader {
	switch strings.ToLower(strings.TrimSpace(stripComments(enc))) {
	case "base64":
		return &base64Reader{r: r}
	case "quoted-printable":
		return &qpReader{br: bufio.NewReaderSize(r, maxLine)}
	}
	return r
}

// isIdentityEncoding says whether enc leaves the bytes as they are.
func isIdentityEncoding(enc string) bool {
	switch strings.ToLower(strings.TrimSpace(stripComments(enc))) {
	case "", "7bit", "8bit", "binary":
		return true
	}
	return false
}

// base64Reader decodes base64 (RFC 2045 §6.8). Characters outside the
// alphabet are ignored, as §6.8 asks; padding ends a quantum, and data
// after it (two encoded files run together) is decoded as well.
type base64Reader struct {
	r    io.Reader
	in   [8192]byte
	out  [6144 + 3]byte
	pend []byte
	q    [4]byte
	nq   int
	eof  bool
}

func b64value(c byte) int {
	switch {
	case c >= 'A' && c <= 'Z':
		return int(c - 'A')
	case c >= 'a' && c <= 'z':
		return int(c-'a') + 26
	case c >= '0' && c <= '9':
		return int(c-'0') + 52
	case c == '+':
		return 62
	case c == '/':
		return 63
	case c == '=':
		return -2
	}
	return -1
}

func (b *base64Reader) flush(out []byte) []byte {
	switch b.nq {
	case 2:
		out = append(out, b.q[0]<<2|b.q[1]>>4)
	case 3:
		out = append(out, b.q[0]<<2|b.q[1]>>4, b.q[1]<<4|b.q[2]>>2)
	}
	b.nq = 0
	return out
}

func (b *base64Reader) Read(p []byte) (int, error) {
	for len(b.pend) == 0 {
		if b.eof {
			return 0, io.EOF
		}
		n, err := b.r.Read(b.in[:])
		out := b.out[:0]
		for _, c := range b.in[:n] {
			v := b64value(c)
			if v == -2 {
				out = b.flush(out)
				continue
			}
			if v < 0 {
				continue
			}
			b.q[b.nq] = byte(v)
			b.nq++
			if b.nq == 4 {
				out = append(out, b.q[0]<<2|b.q[1]>>4, b.q[1]<<4|b.q[2]>>2, b.q[2]<<6|b.q[3])
				b.nq = 0
			}
		}
		if err != nil {
			out = b.flush(out)
			b.eof = true
		}
		b.pend = out
	}
	n := copy(p, b.pend)
	b.pend = b.pend[n:]
	return n, nil
}

// qpReader decodes quoted-printable (RFC 2045 §6.7) line by line:
// trailing white space is dropped (rule 3), "=" at the end of a line is a
// soft break (rule 5), "=" and two hex digits an octet, in either case
// since robust decoders accept lower case (rule 1 note); any other "=" is
// kept as it is. Hard line breaks come out as CRLF.
type qpReader struct {
	br   *bufio.Reader
	out  []byte
	pend []byte
	eof  bool
}

func (q *qpReader) Read(p []byte) (int, error) {
	for len(q.pend) == 0 {
		if q.eof {
			return 0, io.EOF
		}
		line, err := q.br.ReadSlice('\n')
		if err != nil && !errors.Is(err, bufio.ErrBufferFull) {
			q.eof = true
		}
		content, ending := splitEnding(line)
		soft := false
		// The last line of a body has lost its ending to the delimiter
		// after it (RFC 2046 §5.1.1), and is an encoded line all the same.
		if ending != nil || q.eof {
			content = bytes.TrimRight(content, " \t")
			if n := len(content); n > 0 && content[n-1] == '=' {
				content, soft = content[:n-1], true
			}
		}
		out := q.out[:0]
		for i := 0; i < len(content); i++ {
			c := content[i]
			if c == '=' && i+2 < len(content) {
				hi, ok1 := unhex(content[i+1])
				lo, ok2 := unhex(content[i+2])
				if ok1 && ok2 {
					out = append(out, hi<<4|lo)
					i += 2
					continue
				}
			}
			out = append(out, c)
		}
		if ending != nil && !soft {
			out = append(out, '\r', '\n')
		}
		q.out = out
		q.pend = out
	}
	n := copy(p, q.pend)
	q.pend = q.pend[n:]
	return n, nil
}
