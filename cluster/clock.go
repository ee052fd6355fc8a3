package cluster

import (
	"context"
	"encoding/binary"
	"errors"
	"io"
	"sort"
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

// opTime asks a peer for its clock.
const opTime byte = 4

func (c *Cluster) serveTime(bw io.Writer) error {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], uint64(c.now().UnixNano()))
	return writeFrame(bw, stOK, b[:])
}

func (c *Cluster) now() time.Time {
	if c.cfg.Now != nil {
		return c.cfg.Now()
	}
	return time.Now()
}

// ErrNoClockMajority means the clocks that answered do not give a majority
// of the voters agreeing on one time: a voter is unreachable and the two
// others disagree, say. ClockOffset then returns the lower median, the
// earliest plausible time, which a caller without a better estimate may
// use: a clock that runs late only delays notices and expiry, while one
// that runs early sends them before their time.
var ErrNoClockMajority = errors.New("cluster: no majority of the voters' clocks agree")

// clockAgreement is how close two clocks must be to count as agreeing.
const clockAgreement = time.Minute

// ClockOffset estimates how far this node's clock is from the cluster's:
// the median of the offsets of a majority of the voters whose clocks agree,
// this node counting as zero. A node whose clock jumped hours ahead would
// otherwise, as leader, find every message hours old, expire the spool and
// send delay notices early; with the majority, one wrong clock among three
// is outvoted. Peers that do not answer are left out, and without a
// majority that agrees the estimate is refused (ErrNoClockMajority): with
// one voter down, the two remaining clocks cannot tell which of them is
// wrong, and taking the upper one would let a healthy node follow a clock
// that ran ahead.
func (c *Cluster) ClockOffset(ctx context.Context) (time.Duration, error) {
	return c.ClockOffsetFrom(ctx, nil)
}

// ClockOffsetFrom is ClockOffset measured against ref, a clock of the
// caller's (nil: this node's own clock), rather than against this node's
// own clock: the offset from
// ref to the cluster's time, this node's own clock counting as one voter
// (read once, against ref). A caller that keeps a corrected clock passes
// it as ref, so that a step of this node's own clock in the middle of the
// measurement (the peers are read over up to two seconds) cannot skew the
// result.
func (c *Cluster) ClockOffsetFrom(ctx context.Context, ref func() time.Time) (time.Duration, error) {
	servers, err := c.Servers()
	if err != nil {
		return 0, err
	}
	self := time.Duration(0)
	if ref == nil {
		ref = c.now
	} else {
		self = c.now().Round(0).Sub(ref().Round(0))
	}
	offsets := []time.Duration{self}
	voters := 0
	// The peers are asked at once, so that one that does not answer
	// delays the estimate by one timeout, not one per peer.
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, s := range servers {
		if s.Suffrage == raft.Voter {
			voters++
		}
		if string(s.ID) == c.cfg.ID {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			defer cancel()
			t0 := ref()
			var peer time.Time
			err := c.pool.call(cctx, string(s.Address), opTime, nil, nil, func(msg []byte, _ io.Reader) error {
				if len(msg) != 8 {
					return errors.New("cluster: bad time reply")
				}
				peer = time.Unix(0, int64(binary.BigEndian.Uint64(msg)))
				return nil
			})
			t1 := ref()
			if err != nil {
				return
			}
			// The peer read its clock somewhere in the round trip; assume
			// the middle, as NTP does.
			mu.Lock()
			offsets = append(offsets, peer.Sub(t0.Round(0).Add(t1.Sub(t0)/2)))
			mu.Unlock()
		}()
	}
	wg.Wait()
	return clockMajority(offsets, voters/2+1)
}

// clockMajority picks, among offsets, the median of the largest group of
// at least quorum offsets that lie within clockAgreement of each other;
// without one it returns the lower median and ErrNoClockMajority.
func clockMajority(offsets []time.Duration, quorum int) (time.Duration, error) {
	sort.Slice(offsets, func(i, j int) bool { return offsets[i] < offsets[j] })
	bestLo, bestN := 0, 0
	for lo := range offsets {
		hi := lo
		for hi+1 < len(offsets) && offsets[hi+1]-offsets[lo] <= clockAgreement {
			hi++
		}
		if n := hi - lo + 1; n > bestN {
			bestLo, bestN = lo, n
		}
	}
	if bestN < quorum || bestN == 0 {
		return offsets[(len(offsets)-1)/2], ErrNoClockMajority
	}
	return offsets[bestLo+(bestN-1)/2], nil
}
