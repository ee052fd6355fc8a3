package cluster

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/hashicorp/raft"
)

// ErrNoQuorum means a body could not be made durable on a majority.
var ErrNoQuorum = errors.New("cluster: body not stored on a quorum")

// ErrBlobTooLarge means a body was longer than StoreBlob's limit.
var ErrBlobTooLarge = errors.New("cluster: body larger than the limit")

// StoreBlob writes a body to this node's store, fsynced, and returns its
// hash once a majority of voters holds it (ReplicateBlob). Only then may a
// command that references the body be committed: otherwise losing this
// node could lose the body of mail the cluster has accepted (docs/design.md
// §3.1). A body longer than limit (0: no limit) is refused with
// ErrBlobTooLarge and nothing is stored.
func (c *Cluster) StoreBlob(ctx context.Context, r io.Reader, limit int64) (hash string, size int64, err error) {
	w, err := c.cfg.Blobs.Create()
	if err != nil {
		return "", 0, err
	}
	src := r
	var lim *io.LimitedReader
	if limit > 0 {
		// One byte past the limit tells a body of exactly limit bytes
		// from a longer one.
		lim = &io.LimitedReader{R: r, N: limit + 1}
		src = lim
	}
	if _, err := io.Copy(w, src); err != nil {
		w.Abort()
		return "", 0, err
	}
	if lim != nil && lim.N == 0 {
		w.Abort()
		return "", 0, ErrBlobTooLarge
	}
	if hash, size, err = w.Commit(); err != nil {
		return "", 0, err
	}
	if err := c.ReplicateBlob(ctx, hash); err != nil {
		return "", 0, err
	}
	return hash, size, nil
}

// voterPeers returns the Raft addresses of the other voters, and how many
// of them must hold a body so that, with this node, a majority does.
func (c *Cluster) voterPeers() (peers []string, need int, err error) {
	f := c.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return nil, 0, err
	}
	voters := 0
	selfVoter := false
	for _, s := range f.Configuration().Servers {
		if s.Suffrage != raft.Voter {
			continue
		}
		voters++
		if string(s.ID) == c.cfg.ID {
			selfVoter = true
			continue
		}
		peers = append(peers, string(s.Address))
	}
	need = voters/2 + 1
	if selfVoter {
		need--
	}
	return peers, need, nil
}

// ReplicateBlob pushes a locally stored body to the other voters and
// returns once a majority of voters, this node included, has it fsynced
// (docs/design.md §1.4). Pushes to the remaining peers go on in the background,
// so usually every node holds every body.
func (c *Cluster) ReplicateBlob(ctx context.Context, hash string) error {
	peers, need, err := c.voterPeers()
	if err != nil {
		return err
	}
	if need <= 0 && len(peers) == 0 {
		return nil
	}
	results := make(chan error, len(peers))
	for _, addr := range peers {
		go func() {
			// Each push has its own deadline, not the caller's: a push that
			// is no longer needed for the quorum still completes the copy.
			pctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			results <- c.pushBlob(pctx, addr, hash)
		}()
	}
	acked, failed := 0, 0
	var lastErr error
	// A peer cut off mid-push can hold its connection open for minutes;
	// losing the leader is the sign to give up and answer now.
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	for acked < need {
		select {
		case <-tick.C:
			if !c.HasLeader() {
				return fmt.Errorf("%w: %v", ErrNoQuorum, ErrNoLeader)
			}
		case err := <-results:
			if err == nil {
				acked++
				continue
			}
			failed++
			lastErr = err
			if len(peers)-failed < need {
				return fmt.Errorf("%w: %v", ErrNoQuorum, lastErr)
			}
		case <-ctx.Done():
			return fmt.Errorf("%w: %v", ErrNoQuorum, ctx.Err())
		}
	}
	return nil
}

func (c *Cluster) pushBlob(ctx context.Context, addr, hash string) error {
	f, err := c.cfg.Blobs.Open(hash)
	if err != nil {
		return err
	}
	defer f.Close()
	hdr := make([]byte, 64+8)
	copy(hdr, hash)
	binary.BigEndian.PutUint64(hdr[64:], uint64(f.Size()))
	return c.pool.call(ctx, addr, opBlobPut, hdr, f, nil)
}

// FetchBlob copies a body this node lacks from any peer that has it.
func (c *Cluster) FetchBlob(ctx context.Context, hash string) error {
	if c.cfg.Blobs.Has(hash) {
		return nil
	}
	f := c.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return err
	}
	lastErr := errors.New("cluster: no peer to fetch from")
	for _, s := range f.Configuration().Servers {
		if string(s.ID) == c.cfg.ID {
			continue
		}
		err := c.pool.call(ctx, string(s.Address), opBlobGet, []byte(hash), nil, func(msg []byte, r io.Reader) error {
			if len(msg) != 8 {
				return errors.New("cluster: bad blob size")
			}
			size := int64(binary.BigEndian.Uint64(msg))
			return c.cfg.Blobs.Put(hash, io.LimitReader(r, size))
		})
		if err == nil {
			return nil
		}
		lastErr = err
	}
	return lastErr
}
