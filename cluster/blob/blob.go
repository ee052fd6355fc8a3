// Package blob is the node-local, content-addressed store of message
// bodies. A body is named by the sha256 of its bytes and is fsynced before
// its name is handed out, so a command in the Raft log can reference it
// and the body survives a crash of this node.
package blob

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// ErrNotFound is returned for a hash this node does not hold.
var ErrNotFound = errors.New("blob: not found")

// ErrHashMismatch is returned by Put when the bytes do not match the name.
var ErrHashMismatch = errors.New("blob: content does not match its hash")

// Store keeps blobs as dir/<first two hex digits>/<hash>. Spreading them
// over 256 directories keeps concurrent sessions from queueing on one
// directory's lock when they link their bodies in.
type Store struct {
	dir     string
	syncers [256]dirSyncer
	// tmpfile is false where the file system lacks O_TMPFILE; bodies are
	// then written under a temporary name and renamed.
	tmpfile bool
}

// Open creates the directory layout if needed.
func Open(dir string) (*Store, error) {
	s := &Store{dir: dir}
	for i := range s.syncers {
		sub := filepath.Join(dir, fmt.Sprintf("%02x", i))
		if err := os.MkdirAll(sub, 0o700); err != nil {
			return nil, err
		}
		s.syncers[i].dir = sub
	}
	// Leftovers of renamed-style writes that a crash interrupted were never
	// referenced. (An unnamed O_TMPFILE body vanishes by itself.)
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), tmpPrefix) {
			os.Remove(filepath.Join(dir, e.Name()))
		}
	}
	if fd, err := unix.Open(dir, unix.O_TMPFILE|unix.O_RDWR|unix.O_CLOEXEC, 0o600); err == nil {
		unix.Close(fd)
		s.tmpfile = true
	}
	return s, nil
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

// tmpPrefix marks bodies still being written; no hash starts with it.
const tmpPrefix = "tmp-"

// Path is where the body named h lives.
func (s *Store) Path(h string) string {
	return filepath.Join(s.dir, h[:2], h)
}

func (s *Store) path(h string) string { return s.Path(h) }

// Writer streams one body into the store.
type Writer struct {
	s    *Store
	f    *os.File
	buf  *bufio.Writer
	h    hash.Hash
	n    int64
	done bool
}

// Create starts a new blob. Where the file system allows, the body is an
// unnamed file (O_TMPFILE) until Commit links it in under its hash: no
// directory is locked while it is written, and a crash leaves nothing to
// clean up.
func (s *Store) Create() (*Writer, error) {
	var f *os.File
	if s.tmpfile {
		fd, err := unix.Open(s.dir, unix.O_TMPFILE|unix.O_RDWR|unix.O_CLOEXEC, 0o600)
		if err != nil {
			return nil, err
		}
		f = os.NewFile(uintptr(fd), "")
	} else {
		var err error
		if f, err = os.CreateTemp(s.dir, tmpPrefix); err != nil {
			return nil, err
		}
	}
	// SMTP hands the body over a line at a time; the buffer turns that
	// into a few large writes.
	return &Writer{s: s, f: f, buf: bufio.NewWriterSize(f, 64<<10), h: sha256.New()}, nil
}

func (w *Writer) Write(p []byte) (int, error) {
	n, err := w.buf.Write(p)
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
	fail := func(err error) (string, int64, error) {
		w.f.Close()
		if !w.s.tmpfile {
			os.Remove(w.f.Name())
		}
		return "", 0, err
	}
	if err := w.buf.Flush(); err != nil {
		return fail(fmt.Errorf("blob: write: %w", err))
	}
	if err := w.f.Sync(); err != nil {
		return fail(fmt.Errorf("blob: fsync: %w", err))
	}
	h := hex.EncodeToString(w.h.Sum(nil))
	if w.s.tmpfile {
		// Link the unnamed file in through its /proc name, which needs
		// no capability (unlike AT_EMPTY_PATH).
		err := unix.Linkat(unix.AT_FDCWD, fmt.Sprintf("/proc/self/fd/%d", w.f.Fd()), unix.AT_FDCWD, w.s.path(h), unix.AT_SYMLINK_FOLLOW)
		w.f.Close()
		if err != nil && !errors.Is(err, fs.ErrExist) {
			return "", 0, fmt.Errorf("blob: link: %w", err)
		}
		if err := w.s.syncers[prefixIndex(h)].sync(); err != nil {
			return "", 0, fmt.Errorf("blob: fsync dir: %w", err)
		}
		return h, w.n, nil
	}
	tmp := w.f.Name()
	if err := w.f.Close(); err != nil {
		os.Remove(tmp)
		return "", 0, err
	}
	if err := w.s.install(tmp, h); err != nil {
		return "", 0, err
	}
	return h, w.n, nil
}

func prefixIndex(h string) int {
	b, _ := hex.DecodeString(h[:2])
	return int(b[0])
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
	if err := s.syncers[prefixIndex(h)].sync(); err != nil {
		return fmt.Errorf("blob: fsync dir: %w", err)
	}
	return nil
}

// dirSyncer makes renames durable with as few directory fsyncs as
// possible: a caller waits for an fsync that starts after its rename, and
// all callers that arrive while one runs share the next.
type dirSyncer struct {
	dir string

	mu      sync.Mutex
	cond    *sync.Cond
	running bool
	started uint64 // fsyncs begun
	done    uint64 // fsyncs finished
	lastErr error
}

func (d *dirSyncer) sync() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.cond == nil {
		d.cond = sync.NewCond(&d.mu)
	}
	// The rename happened before this point, so only an fsync that starts
	// later covers it: a running one may have begun before the rename.
	need := d.started + 1
	for d.done < need {
		if !d.running {
			d.running = true
			d.started++
			round := d.started
			d.mu.Unlock()
			err := fsyncDir(d.dir)
			d.mu.Lock()
			d.running = false
			d.done = round
			d.lastErr = err
			d.cond.Broadcast()
			if round >= need {
				return err
			}
			continue
		}
		d.cond.Wait()
	}
	return d.lastErr
}

func fsyncDir(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Sync()
}

// Abort discards an unfinished blob.
func (w *Writer) Abort() error {
	if w.done {
		return nil
	}
	w.done = true
	w.f.Close()
	if w.s.tmpfile {
		return nil
	}
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
	for i := range s.syncers {
		entries, err := os.ReadDir(s.syncers[i].dir)
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
