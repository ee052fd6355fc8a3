package fsm

import (
	"bytes"
	"errors"
	"fmt"

	"github.com/hashicorp/go-msgpack/v2/codec"
)

// MaxCommandSize keeps entries far below hashicorp/raft's suggested 512 KiB,
// so a log of spool commands stays cheap to replicate and to snapshot.
const MaxCommandSize = 64 << 10

// ErrCommandTooLarge is returned by Encode when a command would exceed
// MaxCommandSize.
var ErrCommandTooLarge = errors.New("fsm: command exceeds 64 KiB")

func msgpackHandle() *codec.MsgpackHandle {
	h := &codec.MsgpackHandle{}
	h.WriteExt = true
	h.RawToString = true
	return h
}

// Encode serialises a command as its type byte followed by msgpack.
func Encode(cmd any) ([]byte, error) {
	t, ok := typeOf(cmd)
	if !ok {
		return nil, fmt.Errorf("fsm: unknown command %T", cmd)
	}
	var buf bytes.Buffer
	buf.WriteByte(byte(t))
	if err := codec.NewEncoder(&buf, msgpackHandle()).Encode(cmd); err != nil {
		return nil, fmt.Errorf("fsm: encode %T: %w", cmd, err)
	}
	if buf.Len() > MaxCommandSize {
		return nil, ErrCommandTooLarge
	}
	return buf.Bytes(), nil
}

// Decode parses an entry produced by Encode. An unknown type that carries
// IgnorableFlag decodes to (nil, nil).
func Decode(data []byte) (any, error) {
	if len(data) == 0 {
		return nil, errors.New("fsm: empty command")
	}
	t := CommandType(data[0])
	r := &commands[t]
	if !r.known() {
		if t.Ignorable() {
			return nil, nil
		}
		return nil, &UnknownCommandError{Type: t}
	}
	cmd := r.new()
	if err := codec.NewDecoderBytes(data[1:], msgpackHandle()).Decode(cmd); err != nil {
		return nil, fmt.Errorf("fsm: decode type %d: %w", t, err)
	}
	return cmd, nil
}

// UnknownCommandError reports a type byte this release does not know.
type UnknownCommandError struct{ Type CommandType }

func (e *UnknownCommandError) Error() string {
	return fmt.Sprintf("fsm: unknown command type %d", e.Type)
}
