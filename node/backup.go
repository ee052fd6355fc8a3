package node

// Backups for disaster recovery: `lifeline admin snapshot save|restore`.
//
// The layout of a backup is in node/backup.
//
// Save takes a consistent snapshot of this node's state store (one read
// transaction), then adds the bodies that snapshot references, fetching
// from peers any this node lacks. Restore runs on the leader: it stores
// the bodies first and copies them to a majority, then installs the state
// as a new Raft snapshot, which every follower installs too. Nothing
// acknowledged in the backup is then without its body on a quorum.

import (
	"archive/tar"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"lifeline/cluster"
	"lifeline/cluster/blob"
	"lifeline/fsm"
	"lifeline/node/backup"
)

// stateCopy is a private, read-only copy of a state stream, opened as a
// store of its own so it can be queried without touching the live one.
type stateCopy struct {
	*fsm.Store
	dir string
}

func (n *Node) openStateCopy(streamPath string) (*stateCopy, error) {
	dir, err := os.MkdirTemp(n.cfg.DataDir, "backup-check-")
	if err != nil {
		return nil, err
	}
	st, err := fsm.Open(filepath.Join(dir, "state.db"))
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	f, err := os.Open(streamPath)
	if err == nil {
		err = st.Restore(f)
		f.Close()
	}
	if err != nil {
		st.Close()
		os.RemoveAll(dir)
		return nil, err
	}
	return &stateCopy{Store: st, dir: dir}, nil
}

func (c *stateCopy) close() {
	c.Store.Close()
	os.RemoveAll(c.dir)
}

// messageBodies returns the body hash of every spooled message in st.
func messageBodies(st *fsm.Store) (map[string]bool, int, error) {
	hashes := map[string]bool{}
	count := 0
	after := ""
	for {
		msgs, next, err := st.Messages(fsm.MessageFilter{}, after, 1000)
		if err != nil {
			return nil, 0, err
		}
		for _, m := range msgs {
			hashes[m.BlobHash] = true
			count++
		}
		if next == "" {
			return hashes, count, nil
		}
		after = next
	}
}

// WriteBackup streams a backup of the replicated state and the bodies it
// references to w.
func (n *Node) WriteBackup(ctx context.Context, w io.Writer) (backup.Manifest, error) {
	man := backup.Manifest{Format: backup.Format, Created: n.cfg.Now().UTC(), Node: n.cfg.ID}

	// 1. The state, from one read transaction, into a file beside the
	// store: it is streamed after the manifest, which needs its contents.
	tmp, err := os.CreateTemp(n.cfg.DataDir, "backup-state-")
	if err != nil {
		return man, err
	}
	defer os.Remove(tmp.Name())
	err = n.store.WriteSnapshot(tmp)
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return man, fmt.Errorf("backup: state snapshot: %w", err)
	}
	cp, err := n.openStateCopy(tmp.Name())
	if err != nil {
		return man, fmt.Errorf("backup: state snapshot: %w", err)
	}
	man.AppliedIndex = cp.AppliedIndex()
	doms, err := cp.Domains()
	if err != nil {
		cp.close()
		return man, err
	}
	man.Domains = len(doms)

	// 2. The bodies that state references: those of spooled messages
	// (fetched from a peer if this node lacks one) and any other
	// referenced body stored here (drafts' attachments).
	need, count, err := messageBodies(cp.Store)
	if err != nil {
		cp.close()
		return man, err
	}
	man.Messages = count
	err = n.blobs.Walk(func(h string, _ time.Time) error {
		if need[h] {
			return nil
		}
		ref, err := cp.BlobReferenced(h)
		if ref {
			need[h] = true
		}
		return err
	})
	cp.close()
	if err != nil {
		return man, err
	}
	hashes := make([]string, 0, len(need))
	for h := range need {
		if !n.blobs.Has(h) {
			fctx, cancel := context.WithTimeout(ctx, time.Minute)
			err := n.cluster.FetchBlob(fctx, h)
			cancel()
			if err != nil {
				man.MissingBodies = append(man.MissingBodies, h)
				continue
			}
		}
		hashes = append(hashes, h)
	}
	sort.Strings(hashes)
	sort.Strings(man.MissingBodies)
	man.Bodies = len(hashes)
	for _, h := range hashes {
		if f, err := n.blobs.Open(h); err == nil {
			man.BodyBytes += f.Size()
			f.Close()
		}
	}

	// 3. Stream: manifest, state, bodies.
	tw := tar.NewWriter(w)
	mj, _ := json.MarshalIndent(man, "", "  ")
	mj = append(mj, '\n')
	hdr := func(name string, size int64) *tar.Header {
		return &tar.Header{Name: name, Size: size, Mode: 0o600, ModTime: man.Created, Typeflag: tar.TypeReg, Format: tar.FormatPAX}
	}
	if err := tw.WriteHeader(hdr(backup.ManifestName, int64(len(mj)))); err != nil {
		return man, err
	}
	if _, err := tw.Write(mj); err != nil {
		return man, err
	}
	if err := copyFileToTar(tw, tmp.Name(), hdr, backup.StateName); err != nil {
		return man, err
	}
	for _, h := range hashes {
		if err := ctx.Err(); err != nil {
			return man, err
		}
		f, err := n.blobs.Open(h)
		if errors.Is(err, blob.ErrNotFound) {
			// Retired and collected since step 2; a restore reports any
			// spooled message whose body is absent.
			continue
		}
		if err != nil {
			return man, err
		}
		err = tw.WriteHeader(hdr(backup.BodyDir+h, f.Size()))
		if err == nil {
			_, err = io.Copy(tw, f)
		}
		f.Close()
		if err != nil {
			return man, err
		}
	}
	if err := tw.Close(); err != nil {
		return man, err
	}
	n.logger.Info("backup written", "messages", man.Messages, "bodies", man.Bodies, "missing_bodies", len(man.MissingBodies), "applied_index", man.AppliedIndex)
	return man, nil
}

func copyFileToTar(tw *tar.Writer, file string, hdr func(string, int64) *tar.Header, name string) error {
	f, err := os.Open(file)
	if err != nil {
		return err
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return err
	}
	if err := tw.WriteHeader(hdr(name, info.Size())); err != nil {
		return err
	}
	_, err = io.Copy(tw, io.LimitReader(f, info.Size()))
	return err
}

// RestoreBackup replaces the whole cluster's state with the backup r; it
// works on the leader only.
func (n *Node) RestoreBackup(ctx context.Context, r io.Reader, force bool) (backup.RestoreReport, error) {
	start := time.Now()
	var rep backup.RestoreReport
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", backup.ErrUnusable, fmt.Sprintf(format, args...))
	}
	if !n.cluster.IsLeader() {
		return rep, cluster.ErrNoLeader
	}
	if !force {
		st, err := n.store.Stats()
		if err != nil {
			return rep, err
		}
		doms, err := n.store.Domains()
		if err != nil {
			return rep, err
		}
		if st.Messages > 0 || len(doms) > 0 {
			return rep, fmt.Errorf("%w (%d spooled messages, %d domains): a restore replaces all of it; restore with --force to go ahead", backup.ErrConflict, st.Messages, len(doms))
		}
	}

	// 1. Read the archive: the manifest, the state into a file beside the
	// store, the bodies straight into the blob store (Put checks each
	// against its name).
	tr := tar.NewReader(r)
	th, err := tr.Next()
	if err != nil || th.Name != backup.ManifestName || th.Size > 1<<20 {
		return rep, bad("the file does not start with %s", backup.ManifestName)
	}
	if err := json.NewDecoder(io.LimitReader(tr, th.Size)).Decode(&rep.Backup); err != nil {
		return rep, bad("manifest: %v", err)
	}
	if rep.Backup.Format != backup.Format {
		return rep, bad("backup format %d; this release reads format %d", rep.Backup.Format, backup.Format)
	}
	stateFile := ""
	defer func() {
		if stateFile != "" {
			os.Remove(stateFile)
		}
	}()
	for {
		th, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return rep, bad("archive: %v", err)
		}
		switch {
		case th.Typeflag == tar.TypeDir:
		case th.Name == backup.StateName && stateFile == "":
			f, err := os.CreateTemp(n.cfg.DataDir, "restore-state-")
			if err != nil {
				return rep, err
			}
			stateFile = f.Name()
			_, err = io.Copy(f, tr)
			if err == nil {
				err = f.Sync()
			}
			if cerr := f.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return rep, bad("state: %v", err)
			}
		case strings.HasPrefix(th.Name, backup.BodyDir):
			h := path.Base(th.Name)
			if !blob.ValidHash(h) {
				return rep, bad("body name %q is not a sha256", th.Name)
			}
			if err := n.blobs.Put(h, tr); err != nil {
				if errors.Is(err, blob.ErrHashMismatch) {
					return rep, bad("body %s does not match its hash", h)
				}
				return rep, fmt.Errorf("restore: storing body %s: %w", h, err)
			}
			rep.Bodies++
		default:
			return rep, bad("unexpected entry %q", th.Name)
		}
		if err := ctx.Err(); err != nil {
			return rep, err
		}
	}
	if stateFile == "" {
		return rep, bad("no %s in the archive", backup.StateName)
	}

	// 2. Check the state opens, and see which bodies it needs.
	cp, err := n.openStateCopy(stateFile)
	if err != nil {
		return rep, bad("state: %v", err)
	}
	applied := cp.AppliedIndex()
	need, count, err := messageBodies(cp.Store)
	doms, derr := cp.Domains()
	cp.close()
	if err == nil {
		err = derr
	}
	if err != nil {
		return rep, bad("state: %v", err)
	}
	rep.Messages, rep.Domains = count, len(doms)
	var present []string
	for h := range need {
		if n.blobs.Has(h) {
			present = append(present, h)
		} else {
			rep.MissingBodies = append(rep.MissingBodies, h)
		}
	}
	sort.Strings(rep.MissingBodies)

	// 3. Bodies on a majority before the state that references them
	// commits (docs/design.md §3.1).
	if err := n.replicateAll(ctx, present); err != nil {
		return rep, err
	}

	// 4. The state, as a Raft snapshot of the whole group.
	f, err := os.Open(stateFile)
	if err != nil {
		return rep, err
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return rep, err
	}
	if err := n.cluster.RestoreState(applied, info.Size(), f, 5*time.Minute); err != nil {
		return rep, fmt.Errorf("restore: installing the state: %w", err)
	}
	n.statsMu.Lock()
	n.statsAt = time.Time{}
	n.statsMu.Unlock()
	n.wakeDelivery()
	rep.Seconds = time.Since(start).Seconds()
	n.logger.Warn("cluster state replaced from a backup", "backup_node", rep.Backup.Node, "backup_created", rep.Backup.Created,
		"messages", rep.Messages, "bodies", rep.Bodies, "missing_bodies", len(rep.MissingBodies))
	return rep, nil
}

// replicateAll copies bodies to a majority of voters, a few at a time.
func (n *Node) replicateAll(ctx context.Context, hashes []string) error {
	work := make(chan string)
	var mu sync.Mutex
	var firstErr error
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for h := range work {
				rctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
				err := n.cluster.ReplicateBlob(rctx, h)
				cancel()
				if err != nil {
					mu.Lock()
					if firstErr == nil {
						firstErr = fmt.Errorf("restore: copying body %s to a majority: %w", h, err)
					}
					mu.Unlock()
				}
			}
		}()
	}
	for _, h := range hashes {
		mu.Lock()
		failed := firstErr != nil
		mu.Unlock()
		if failed || ctx.Err() != nil {
			break
		}
		work <- h
	}
	close(work)
	wg.Wait()
	if firstErr == nil {
		firstErr = ctx.Err()
	}
	return firstErr
}
