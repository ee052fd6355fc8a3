// Package blob is the node-local, content-addressed store of message
// bodies. A body is named by the sha256 of its bytes and is fsynced before
// its name is handed out, so a command in the Raft log can reference it
// and the body survives a crash of this node.
package blob

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"time"
)

// ErrNotFound is returned for a hash this node does not hold.
var ErrNotFound = errors.New("blob: not found")

// ErrHashMismatch is returned by Put when the bytes do not match the name.
var ErrHashMismatch = errors.New("blob: content does not match its hash")

// Store keeps blobs under dir/<first two hex digits>/<hash>.
type Store struct {
	dir string
}

// Open creates the directory layout if needed.
func Open(dir string) (*Store, error) {
	if err := os.MkdirAll(filepath.Join(dir, "tmp"), 0o700); err != nil {
		return nil, err
	}
	for i := 0; i < 256; i++ {
		if err := os.MkdirAll(filepath.Join(dir, fmt.Sprintf("%02x", i)), 0o700); err != nil {
			return nil, err
		}
	}
	// Leftovers of writes that a crash interrupted were never referenced.
	tmps, _ := os.ReadDir(filepath.Join(dir, "tmp"))
	for _, e := range tmps {
		os.Remove(filepath.Join(dir, "tmp", e.Name()))
	}
	return &Store{dir: dir}, nil
}

// ValidHash reports whether h looks like a blob name, so that a name from
// the network can never address a path outside the store.
func ValidHash(h string) bool {
	if len(h) != sha256.Size*2 {
		return false
	}
	for _, c := range h {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

func (s *Store) path(h string) string {
	return filepath.Join(s.dir, h[:2], h)
}

// Writer streams one body into the store.
type Writer struct {
	s    *Store
	f    *os.File
	h    hash.Hash
	n    int64
	done bool
}

// Create starts a new blob.
func (s *Store) Create() (*Writer, error) {
	f, err := os.CreateTemp(filepath.Join(s.dir, "tmp"), "in-")
	if err != nil {
		return nil, err
	}
	return &Writer{s: s, f: f, h: sha256.New()}, nil
}

func (w *Writer) Write(p []byte) (int, error) {
	n, err := w.f.Write(p)
	w.h.Write(p[:n])
	w.n += int64(n)
	return n, err
}

// Commit fsyncs the body, moves it to its content address and fsyncs the
// directory, so the name survives a crash as well as the bytes.
func (w *Writer) Commit() (string, int64, error) {
	if w.done {
		return "", 0, errors.New("blob: writer already finished")
	}
	w.done = true
	tmp := w.f.Name()
	if err := w.f.Sync(); err != nil {
		w.f.Close()
		os.Remove(tmp)
		return "", 0, fmt.Errorf("blob: fsync: %w", err)
	}
	if err := w.f.Close(); err != nil {
		os.Remove(tmp)
		return "", 0, err
	}
	h := hex.EncodeToString(w.h.Sum(nil))
	if err := w.s.install(tmp, h); err != nil {
		return "", 0, err
	}
	return h, w.n, nil
}

func (s *Store) install(tmp, h string) error {
	dst := s.path(h)
	if _, err := os.Stat(dst); err == nil {
		// Same content already stored: identical bytes, nothing to do.
		os.Remove(tmp)
		return nil
	}
	if err := os.Rename(tmp, dst); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("blob: install: %w", err)
	}
	d, err := os.Open(filepath.Dir(dst))
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("blob: fsync dir: %w", err)
	}
	return nil
}

// Abort discards an unfinished blob.
func (w *Writer) Abort() error {
	if w.done {
		return nil
	}
	w.done = true
	w.f.Close()
	return os.Remove(w.f.Name())
}

// Put stores a blob received from a peer, checking that the bytes match the
// name before they become addressable.
func (s *Store) Put(h string, r io.Reader) error {
	if !ValidHash(h) {
		return fmt.Errorf("blob: invalid hash %q", h)
	}
	if s.Has(h) {
		_, err := io.Copy(io.Discard, r)
		return err
	}
	w, err := s.Create()
	if err != nil {
		return err
	}
	if _, err := io.Copy(w, r); err != nil {
		w.Abort()
		return err
	}
	if got := hex.EncodeToString(w.h.Sum(nil)); got != h {
		w.Abort()
		return ErrHashMismatch
	}
	_, _, err = w.Commit()
	return err
}

// Has reports whether the blob is stored here.
func (s *Store) Has(h string) bool {
	if !ValidHash(h) {
		return false
	}
	_, err := os.Stat(s.path(h))
	return err == nil
}

// Open returns the blob for reading.
func (s *Store) Open(h string) (*os.File, error) {
	if !ValidHash(h) {
		return nil, ErrNotFound
	}
	f, err := os.Open(s.path(h))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, ErrNotFound
	}
	return f, err
}

// Remove deletes a blob; removing a missing one is not an error.
func (s *Store) Remove(h string) error {
	if !ValidHash(h) {
		return nil
	}
	err := os.Remove(s.path(h))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	return err
}

// Walk calls fn for every stored blob with its modification time, for
// garbage collection of blobs that no committed message references.
func (s *Store) Walk(fn func(h string, mod time.Time) error) error {
	for i := 0; i < 256; i++ {
		entries, err := os.ReadDir(filepath.Join(s.dir, fmt.Sprintf("%02x", i)))
		if err != nil {
			return err
		}
		for _, e := range entries {
			if !ValidHash(e.Name()) {
				continue
			}
			info, err := e.Info()
			if err != nil {
				continue
			}
			if err := fn(e.Name(), info.ModTime()); err != nil {
				return err
			}
		}
	}
	return nil
}
