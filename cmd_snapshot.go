package main

import (
	"archive/tar"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"lifeline/node/backup"
)

// adminSnapshot runs `lifeline admin snapshot save|restore`.
func adminSnapshot(op string, args []string, stdout, stderr io.Writer) error {
	fs, a := apiCommand("admin snapshot "+op, stderr, true)
	force := fs.Bool("force", false, "restore: replace a state that already holds mail or domains")
	pos, err := parseInterleaved(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		printHelp(stderr, verbs(), "admin snapshot")
		return errUsage
	}
	if op == "save" {
		return snapshotSave(a, pos[0], stdout)
	}
	return snapshotRestore(a, pos[0], *force, stdout)
}

// snapshotSave downloads a backup into FILE. The bytes go to FILE.partial
// and are read back as a tar while they arrive; only a complete archive is
// fsynced and renamed to FILE.
func snapshotSave(a *apiFlags, file string, stdout io.Writer) error {
	body, err := a.client().Backup(context.Background())
	if err != nil {
		return err
	}
	defer body.Close()
	tmp := file + ".partial"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	ok := false
	defer func() {
		if !ok {
			f.Close()
			os.Remove(tmp)
		}
	}()
	var out io.Writer = f
	var zw *gzip.Writer
	if strings.HasSuffix(file, ".gz") {
		zw = gzip.NewWriter(f)
		out = zw
	}
	man, entries, err := readBackup(io.TeeReader(body, out))
	if err != nil {
		return fmt.Errorf("backup stream: %w", err)
	}
	if zw != nil {
		if err := zw.Close(); err != nil {
			return err
		}
	}
	if err := f.Sync(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, file); err != nil {
		return err
	}
	ok = true
	if d, err := os.Open(filepath.Dir(file)); err == nil {
		d.Sync()
		d.Close()
	}
	if a.json {
		return printJSON(stdout, man)
	}
	fmt.Fprintf(stdout, "saved %s: %d messages, %d domains, %d bodies (%d bytes), state at index %d, from %s (%d archive entries)\n",
		file, man.Messages, man.Domains, man.Bodies, man.BodyBytes, man.AppliedIndex, man.Node, entries)
	if len(man.MissingBodies) > 0 {
		fmt.Fprintf(stdout, "WARNING: %d referenced bodies could not be read and are not in the backup: %s\n",
			len(man.MissingBodies), strings.Join(man.MissingBodies, ", "))
	}
	return nil
}

// readBackup reads a whole backup archive and returns its manifest, so a
// truncated download fails here rather than at restore time.
func readBackup(r io.Reader) (backup.Manifest, int, error) {
	var man backup.Manifest
	tr := tar.NewReader(r)
	entries := 0
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return man, entries, err
		}
		if entries == 0 {
			if h.Name != backup.ManifestName {
				return man, entries, errors.New("not a Lifeline backup (no manifest)")
			}
			if err := json.NewDecoder(tr).Decode(&man); err != nil {
				return man, entries, fmt.Errorf("manifest: %w", err)
			}
		}
		if _, err := io.Copy(io.Discard, tr); err != nil {
			return man, entries, err
		}
		entries++
	}
	if entries == 0 {
		return man, 0, errors.New("empty archive")
	}
	// Anything after the end-of-archive marker is read too, so the whole
	// stream reaches the file.
	_, err := io.Copy(io.Discard, r)
	return man, entries, err
}

// snapshotRestore uploads FILE to the node. A follower redirects to the
// leader; the body is reopened for the second request.
func snapshotRestore(a *apiFlags, file string, force bool, stdout io.Writer) error {
	f, err := os.Open(file)
	if err != nil {
		return err
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return err
	}
	open := func() (io.ReadCloser, error) { return os.Open(file) }
	rep, err := a.client().Restore(context.Background(), open, info.Size(), force)
	if err != nil {
		return err
	}
	if a.json {
		return printJSON(stdout, rep)
	}
	fmt.Fprintf(stdout, "restored %s (taken on %s at %s): %d messages, %d domains, %d bodies in %.1fs\n",
		file, rep.Backup.Node, rep.Backup.Created.Format("2006-01-02 15:04:05Z07:00"), rep.Messages, rep.Domains, rep.Bodies, rep.Seconds)
	if len(rep.MissingBodies) > 0 {
		fmt.Fprintf(stdout, "WARNING: %d spooled messages have no body in the backup: %s\n", len(rep.MissingBodies), strings.Join(rep.MissingBodies, ", "))
	}
	fmt.Fprintln(stdout, "the operator token is now the one of the cluster the backup came from")
	return nil
}
