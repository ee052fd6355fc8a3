package node

import (
	"crypto/rand"
	"encoding/binary"
	"time"
)

// crockford is Crockford's base32 alphabet: no I, L, O or U, so an ID read
// aloud over the phone survives.
const crockford = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"

// newQueueID returns an 18-character ID whose first 10 characters encode
// the millisecond of arrival, so the queue lists oldest first by key order,
// and whose last 8 are random.
func newQueueID(now time.Time) string {
	var b [18]byte
	ms := uint64(now.UnixMilli())
	for i := 9; i >= 0; i-- {
		b[i] = crockford[ms&31]
		ms >>= 5
	}
	var r [8]byte
	rand.Read(r[:])
	x := binary.BigEndian.Uint64(r[:])
	for i := 17; i >= 10; i-- {
		b[i] = crockford[x&31]
		x >>= 5
	}
	return string(b[:])
}
