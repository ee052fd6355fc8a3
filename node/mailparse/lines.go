package mailparse

import (
	"bufio"
	"bytes"
	"errors"
	"io"
)

// maxLine is the longest piece of a line handed out at once. A longer
// line comes in pieces; only a piece that starts a line can be a boundary
// or a header field, and no boundary line is anywhere near this long
// (RFC 2046 §5.1.1 bounds a boundary at 70 characters).
const maxLine = 64 << 10

// lineReader hands a message out line by line, with one line of
// lookahead: the parser must see a boundary line before deciding whose it
// is. Lines keep their ending (LF or CRLF), so a body is handed on byte
// for byte.
type lineReader struct {
	br      *bufio.Reader
	buf     []byte // the line peeked, owned by the reader
	start   bool   // buf begins a line (the piece before it ended one)
	have    bool   // buf holds a line not yet consumed
	atStart bool   // the next piece read begins a line
	done    bool   // end of input, or the walk was stopped
	err     error  // a read error other than the end of input
}

func newLineReader(r io.Reader) *lineReader {
	return &lineReader{br: bufio.NewReaderSize(r, maxLine), atStart: true}
}

// peek returns the next line without consuming it; ok is false at the end.
// The slice is valid until the next call of peek or next.
func (l *lineReader) peek() (line []byte, start, ok bool) {
	if l.have {
		return l.buf, l.start, true
	}
	if l.done {
		return nil, false, false
	}
	b, err := l.br.ReadSlice('\n')
	if len(b) == 0 {
		l.done = true
		if err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, bufio.ErrBufferFull) {
			l.err = err
		}
		return nil, false, false
	}
	if err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, bufio.ErrBufferFull) {
		l.err = err
	}
	l.buf = append(l.buf[:0], b...)
	l.start = l.atStart
	l.atStart = b[len(b)-1] == '\n'
	l.have = true
	return l.buf, l.start, true
}

// next consumes the line peek returns.
func (l *lineReader) next() (line []byte, start, ok bool) {
	line, start, ok = l.peek()
	l.have = false
	return line, start, ok
}

// stop ends the walk: every later peek finds the end of input.
func (l *lineReader) stop() {
	l.done, l.have = true, false
}

// splitEnding cuts the line ending (CRLF or LF) off a line.
func splitEnding(line []byte) (content, ending []byte) {
	if n := len(line); n > 0 && line[n-1] == '\n' {
		if n > 1 && line[n-2] == '\r' {
			return line[:n-2], line[n-2:]
		}
		return line[:n-1], line[n-1:]
	}
	return line, nil
}

// isBlank says whether a line holds nothing but its ending.
func isBlank(line []byte) bool {
	c, _ := splitEnding(line)
	return len(c) == 0
}

// matchDelimiter reports which of bounds (innermost first) line is a
// delimiter of, or -1, and whether it is the close delimiter. RFC 2046
// §5.1.1: "--" and the boundary at the start of a line, "--" after it for
// the last one, then only linear white space ("transport padding").
func matchDelimiter(line []byte, bounds []string) (int, bool) {
	if len(bounds) == 0 || len(line) < 3 || line[0] != '-' || line[1] != '-' {
		return -1, false
	}
	rest := line[2:]
	for i, b := range bounds {
		if !bytes.HasPrefix(rest, []byte(b)) {
			continue
		}
		tail := rest[len(b):]
		closing := bytes.HasPrefix(tail, []byte("--"))
		if closing {
			tail = tail[2:]
		}
		if len(bytes.Trim(tail, " \t\r\n")) == 0 {
			return i, closing
		}
	}
	return -1, false
}

// bodyReader reads the body of one part: the lines up to the next
// delimiter of any enclosing multipart, or the end. RFC 2046 §5.1.1: the
// line ending before a delimiter belongs to the delimiter, so each line's
// ending is held back until the line after it is known not to be one.
type bodyReader struct {
	lr      *lineReader
	bounds  []string
	buf     []byte
	cur     []byte
	pending []byte
	done    bool
}

func (b *bodyReader) Read(p []byte) (int, error) {
	for len(b.cur) == 0 {
		if b.done {
			return 0, io.EOF
		}
		line, start, ok := b.lr.peek()
		if !ok {
			// No delimiter follows: the ending held back is the body's.
			b.done = true
			b.buf = append(b.buf[:0], b.pending...)
			b.cur = b.buf
			continue
		}
		if start {
			if i, _ := matchDelimiter(line, b.bounds); i >= 0 {
				b.done = true
				return 0, io.EOF
			}
		}
		b.lr.next()
		content, ending := splitEnding(line)
		b.buf = append(append(b.buf[:0], b.pending...), content...)
		b.pending = append(b.pending[:0], ending...)
		b.cur = b.buf
	}
	n := copy(p, b.cur)
	b.cur = b.cur[n:]
	return n, nil
}
