package node

import (
	"context"
	"sync"
	"time"

	"lifeline/fsm"
)

// blobGrace is how long an unreferenced blob is kept. A body is written
// before its SpoolAdd commits, and on a follower it may arrive before the
// entry is applied; the grace period covers both, and a body whose
// SpoolAdd never committed is dropped after it (docs/design.md §1.8).
const blobGrace = 15 * time.Minute

// collectBlobs removes bodies that no spooled message references any more.
// It returns how many it removed.
func (n *Node) collectBlobs(now time.Time) (int, error) {
	removed := 0
	err := n.blobs.Walk(func(h string, mod time.Time) error {
		if now.Sub(mod) < blobGrace {
			return nil
		}
		ref, err := n.store.BlobReferenced(h)
		if err != nil {
			return err
		}
		if !ref {
			if err := n.blobs.Remove(h); err != nil {
				return err
			}
			removed++
		}
		return nil
	})
	return removed, err
}

func (n *Node) gcLoop() {
	defer n.wg.Done()
	t := time.NewTicker(5 * time.Minute)
	defer t.Stop()
	for {
		select {
		case <-n.stop:
			return
		case <-t.C:
			// File times come from the host clock, so the age of a body
			// is measured with it too, whatever the node's clock says.
			if removed, err := n.collectBlobs(time.Now()); err != nil {
				n.logger.Warn("blob collection failed", "err", err)
			} else if removed > 0 {
				n.logger.Info("removed retired message bodies", "count", removed)
			}
			// Retired bodies free their space when their whole segment
			// goes; compaction covers segments kept by a few long-spooled
			// messages.
			if freed, err := n.blobs.Compact(); err != nil {
				n.logger.Warn("blob compaction failed", "err", err)
			} else if freed > 0 {
				n.logger.Info("compacted message body segments", "freed_bytes", freed)
			}
		}
	}
}

// repairBlobs fetches the bodies of spooled messages that this node lacks:
// it was down when they arrived, or it joined later. It first counts what
// is missing, so the lag it reports is true while the copy runs, then
// fetches with a few parallel requests. It returns how many it fetched and
// how many it still lacks.
func (n *Node) repairBlobs(ctx context.Context) (fetched, missing int) {
	var want []string
	seen := map[string]bool{}
	after := ""
	for ctx.Err() == nil {
		msgs, next, err := n.store.Messages(fsm.MessageFilter{}, after, 1000)
		if err != nil {
			return 0, len(want)
		}
		for _, m := range msgs {
			if !seen[m.BlobHash] && !n.blobs.Has(m.BlobHash) {
				seen[m.BlobHash] = true
				want = append(want, m.BlobHash)
			}
		}
		if next == "" {
			break
		}
		after = next
	}
	n.blobLag.Store(int64(len(want)))
	var mu sync.Mutex
	var wg sync.WaitGroup
	jobs := make(chan string)
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for h := range jobs {
				fctx, cancel := context.WithTimeout(ctx, time.Minute)
				err := n.cluster.FetchBlob(fctx, h)
				cancel()
				mu.Lock()
				if err == nil {
					fetched++
					n.blobLag.Add(-1)
				} else {
					missing++
				}
				mu.Unlock()
			}
		}()
	}
	for _, h := range want {
		if ctx.Err() != nil {
			break
		}
		jobs <- h
	}
	close(jobs)
	wg.Wait()
	return fetched, missing
}

func (n *Node) repairLoop() {
	defer n.wg.Done()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		<-n.stop
		cancel()
	}()
	t := time.NewTicker(5 * time.Second)
	defer t.Stop()
	for {
		select {
		case <-n.stop:
			return
		case <-t.C:
		}
		fetched, missing := n.repairBlobs(ctx)
		if fetched > 0 || missing > 0 {
			n.logger.Info("copied message bodies from peers", "fetched", fetched, "still_missing", missing)
		}
	}
}
