package blob

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestWriteCommitOpen(t *testing.T) {
	s, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	body := bytes.Repeat([]byte("line of mail\r\n"), 1000)
	w, err := s.Create()
	if err != nil {
		t.Fatal(err)
	}
	w.Write(body[:100])
	w.Write(body[100:])
	h, n, err := w.Commit()
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(body)
	if h != hex.EncodeToString(sum[:]) || n != int64(len(body)) {
		t.Fatalf("hash %s size %d", h, n)
	}
	f, err := s.Open(h)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(f)
	f.Close()
	if !bytes.Equal(got, body) {
		t.Fatal("body changed in the store")
	}
	var seen []string
	s.Walk(func(h string, _ time.Time) error { seen = append(seen, h); return nil })
	if len(seen) != 1 || seen[0] != h {
		t.Fatalf("walk saw %v", seen)
	}
	if err := s.Remove(h); err != nil || s.Has(h) {
		t.Fatalf("remove: %v", err)
	}
}

func TestAbortLeavesNothing(t *testing.T) {
	dir := t.TempDir()
	s, _ := Open(dir)
	w, _ := s.Create()
	w.Write([]byte("half a message"))
	w.Abort()
	files := 0
	filepath.WalkDir(dir, func(_ string, d fs.DirEntry, _ error) error {
		if d != nil && !d.IsDir() {
			files++
		}
		return nil
	})
	if files != 0 {
		t.Fatalf("abort left %d files", files)
	}
}

func TestPutChecksHash(t *testing.T) {
	s, _ := Open(t.TempDir())
	body := []byte("hello")
	sum := sha256.Sum256(body)
	h := hex.EncodeToString(sum[:])
	if err := s.Put(h, strings.NewReader("tampered")); !errors.Is(err, ErrHashMismatch) {
		t.Fatalf("tampered body accepted: %v", err)
	}
	if s.Has(h) {
		t.Fatal("tampered body stored")
	}
	if err := s.Put(h, bytes.NewReader(body)); err != nil || !s.Has(h) {
		t.Fatalf("put: %v", err)
	}
}

func TestHostileNames(t *testing.T) {
	s, _ := Open(t.TempDir())
	for _, h := range []string{"../../etc/passwd", "", "ZZ", strings.Repeat("A", 64), strings.Repeat("a", 63) + "/"} {
		if _, err := s.Open(h); !errors.Is(err, ErrNotFound) {
			t.Fatalf("Open(%q) = %v", h, err)
		}
		if err := s.Put(h, strings.NewReader("x")); err == nil {
			t.Fatalf("Put(%q) accepted", h)
		}
	}
}

// Many concurrent commits share directory fsyncs and every one of them
// ends up stored.
func TestConcurrentCommits(t *testing.T) {
	s, _ := Open(t.TempDir())
	errs := make(chan error, 50)
	for i := 0; i < 50; i++ {
		go func() {
			w, err := s.Create()
			if err != nil {
				errs <- err
				return
			}
			fmt.Fprintf(w, "message %d\r\n", i)
			_, _, err = w.Commit()
			errs <- err
		}()
	}
	for i := 0; i < 50; i++ {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	n := 0
	s.Walk(func(string, time.Time) error { n++; return nil })
	if n != 50 {
		t.Fatalf("%d blobs stored, want 50", n)
	}
}
