package gossip

import (
	"errors"
	"fmt"

	"github.com/hashicorp/go-msgpack/v2/codec"
	"github.com/hashicorp/memberlist"
)

// Meta is what a node tells every other node about itself through memberlist.
// It travels in every alive message, so it must stay small: memberlist refuses
// (by panicking) metadata over memberlist.MetaMaxSize (512) bytes, and Start
// and UpdateMeta turn that into an error instead.
type Meta struct {
	RaftAddr        string
	HTTPAddr        string
	SMTPAddr        string
	Version         string
	BootstrapExpect int
	// Formed: the node already belongs to a Raft cluster, so nodes that
	// see it join that cluster instead of forming a new one.
	Formed bool
	// Types is the set of command types the node's build can apply, in
	// the cluster layer's 32-byte bitmap form (fsm.TypeSet); gossip only
	// carries it. It is empty from a node of a release before the field
	// existed, which the reader takes as "the baseline only". A string
	// rather than a slice keeps Meta comparable.
	Types string
}

// metaFormatV1 leads the encoded metadata so a later node can change the
// encoding without older nodes misreading it; they fail to decode and say so.
const metaFormatV1 byte = 1

// wireMeta keeps single-letter keys on the wire: with three host:port strings
// and a version, the full field names would eat a noticeable part of the 512
// bytes. A map (not an array) lets a later version add keys that older nodes
// ignore.
type wireMeta struct {
	RaftAddr        string `codec:"r,omitempty"`
	HTTPAddr        string `codec:"h,omitempty"`
	SMTPAddr        string `codec:"s,omitempty"`
	Version         string `codec:"v,omitempty"`
	BootstrapExpect int    `codec:"b,omitempty"`
	Formed          bool   `codec:"f,omitempty"`
	// 32 raw bytes cost 37 on the wire with the key; hex would cost 69.
	Types string `codec:"t,omitempty"`
}

// ErrMetaTooLarge is wrapped by the error Start and UpdateMeta return when the
// encoded metadata exceeds memberlist's limit.
var ErrMetaTooLarge = errors.New("gossip: node metadata too large")

func encodeMeta(m Meta) ([]byte, error) {
	var body []byte
	w := wireMeta(m)
	if err := codec.NewEncoderBytes(&body, &codec.MsgpackHandle{}).Encode(&w); err != nil {
		return nil, fmt.Errorf("gossip: encode metadata: %w", err)
	}
	buf := append([]byte{metaFormatV1}, body...)
	if len(buf) > memberlist.MetaMaxSize {
		return nil, fmt.Errorf("%w: %d bytes encoded, memberlist allows at most %d; shorten the advertised addresses or the version string",
			ErrMetaTooLarge, len(buf), memberlist.MetaMaxSize)
	}
	return buf, nil
}

func decodeMeta(b []byte) (Meta, error) {
	if len(b) == 0 {
		return Meta{}, errors.New("gossip: node advertises no metadata")
	}
	if b[0] != metaFormatV1 {
		return Meta{}, fmt.Errorf("gossip: unknown metadata format %d", b[0])
	}
	var w wireMeta
	if err := codec.NewDecoderBytes(b[1:], &codec.MsgpackHandle{}).Decode(&w); err != nil {
		return Meta{}, fmt.Errorf("gossip: decode metadata: %w", err)
	}
	return Meta(w), nil
}
