package cluster

import (
	"context"
	"encoding/binary"
	"errors"
	"io"
	"sort"
	"time"
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

// ClockOffset estimates how far this node's clock is from the cluster's:
// the median of the offsets to every voter, this node counting as zero. A
// node whose clock jumped hours ahead would otherwise, as leader, find
// every message hours old and send delay notices early; with the median,
// one wrong clock among three is outvoted. Peers that do not answer are
// left out.
func (c *Cluster) ClockOffset(ctx context.Context) (time.Duration, error) {
	servers, err := c.Servers()
	if err != nil {
		return 0, err
	}
	offsets := []time.Duration{0}
	for _, s := range servers {
		if string(s.ID) == c.cfg.ID {
			continue
		}
		cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		t0 := c.now()
		var peer time.Time
		err := c.pool.call(cctx, string(s.Address), opTime, nil, nil, func(msg []byte, _ io.Reader) error {
			if len(msg) != 8 {
				return errors.New("cluster: bad time reply")
			}
			peer = time.Unix(0, int64(binary.BigEndian.Uint64(msg)))
			return nil
		})
		t1 := c.now()
		cancel()
		if err != nil {
			continue
		}
		// The peer read its clock somewhere in the round trip; assume the
		// middle, as NTP does.
		offsets = append(offsets, peer.Sub(t0.Add(t1.Sub(t0)/2)))
	}
	sort.Slice(offsets, func(i, j int) bool { return offsets[i] < offsets[j] })
	return offsets[len(offsets)/2], nil
}
