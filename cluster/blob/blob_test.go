package blob

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
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

// Many concurrent commits share fdatasyncs and every one of them ends up
// stored, and found again after a restart.
func TestConcurrentCommits(t *testing.T) {
	dir := t.TempDir()
	s, _ := OpenWith(dir, Options{SegmentSize: 4 << 10})
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
	s.Close()
	s2, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 50; i++ {
		if got := readBody(t, s2, hashOf(fmt.Sprintf("message %d\r\n", i))); got != fmt.Sprintf("message %d\r\n", i) {
			t.Fatalf("after restart body %d reads %q", i, got)
		}
	}
}

func hashOf(body string) string {
	sum := sha256.Sum256([]byte(body))
	return hex.EncodeToString(sum[:])
}

func store(t *testing.T, s *Store, body string) string {
	t.Helper()
	w, err := s.Create()
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(w, body)
	h, _, err := w.Commit()
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func readBody(t *testing.T, s *Store, h string) string {
	t.Helper()
	r, err := s.Open(h)
	if err != nil {
		t.Fatalf("open %s: %v", h[:8], err)
	}
	defer r.Close()
	b, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	if int64(len(b)) != r.Size() {
		t.Fatalf("read %d bytes, size says %d", len(b), r.Size())
	}
	return string(b)
}

func segments(t *testing.T, dir string) []string {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(dir, "*.seg"))
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(m)
	return m
}

// A crash in the middle of an append leaves a torn record at the end of
// the newest segment: a cut header, or an intact header over a cut body.
// Reopening keeps every complete body, cuts the tail away, and appends
// after it.
func TestTornTailIsCut(t *testing.T) {
	for _, tc := range []struct {
		name string
		tear func(full []byte) []byte // given a whole record, what reached the disk
	}{
		{"cut header", func(full []byte) []byte { return full[:headerSize/2] }},
		{"cut body", func(full []byte) []byte { return full[:headerSize+10] }},
		{"body bytes lost", func(full []byte) []byte {
			b := slices.Clone(full)
			copy(b[headerSize:], make([]byte, 20))
			return b
		}},
		{"zeroed page", func(full []byte) []byte { return make([]byte, len(full)) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			s, _ := Open(dir)
			a := store(t, s, "first body\r\n")
			b := store(t, s, "second body\r\n")
			s.Close()
			segs := segments(t, dir)
			if len(segs) != 1 {
				t.Fatalf("segments %v", segs)
			}
			good, _ := os.ReadFile(segs[0])
			// The record a third write would have made, torn.
			body := "third body, never acknowledged\r\n"
			rec := make([]byte, headerSize+len(body))
			putHeader(rec, header{size: int64(len(body)), hash: sha256.Sum256([]byte(body)), at: 1, bodyCRC: crc32Of(body)})
			copy(rec[headerSize:], body)
			if err := os.WriteFile(segs[0], append(slices.Clone(good), tc.tear(rec)...), 0o600); err != nil {
				t.Fatal(err)
			}

			// Inspection reads but repairs nothing.
			in, err := Inspect(dir)
			if err != nil || !in.Has(a) || !in.Has(b) || in.Has(hashOf(body)) {
				t.Fatalf("inspect: %v", err)
			}
			if fi, _ := os.Stat(segs[0]); fi.Size() == int64(len(good)) {
				t.Fatal("inspect changed the segment")
			}

			s2, err := Open(dir)
			if err != nil {
				t.Fatal(err)
			}
			if readBody(t, s2, a) != "first body\r\n" || readBody(t, s2, b) != "second body\r\n" || s2.Has(hashOf(body)) {
				t.Fatal("complete bodies lost or torn body indexed")
			}
			if fi, _ := os.Stat(segs[0]); fi.Size() != int64(len(good)) {
				t.Fatalf("torn tail not cut: %d bytes, want %d", fi.Size(), len(good))
			}
			c := store(t, s2, body)
			s2.Close()
			s3, _ := Open(dir)
			if readBody(t, s3, c) != body || readBody(t, s3, a) != "first body\r\n" {
				t.Fatal("write after repair lost")
			}
		})
	}
}

func crc32Of(s string) uint32 {
	c := crc32.New(castagnoli)
	c.Write([]byte(s))
	return c.Sum32()
}

// A segment whose bodies are all gone is deleted; one that is mostly dead
// is compacted; the survivors keep their write times, so compaction does
// not make an old orphan look new to garbage collection.
func TestSegmentsAreDeletedAndCompacted(t *testing.T) {
	dir := t.TempDir()
	clock := time.Unix(1_700_000_000, 0)
	s, _ := OpenWith(dir, Options{SegmentSize: 1024, Now: func() time.Time { return clock }})
	defer s.Close()
	var hashes []string
	for i := range 40 {
		hashes = append(hashes, store(t, s, fmt.Sprintf("%03d %s\r\n", i, strings.Repeat("x", 200))))
		clock = clock.Add(time.Second)
	}
	before := segments(t, dir)
	if len(before) < 5 {
		t.Fatalf("%d segments for 40 bodies of 200 bytes with 1 KiB segments", len(before))
	}
	// Everything in the first segment retires.
	first := map[string]bool{}
	for _, h := range hashes {
		s.mu.Lock()
		k, _ := parseHash(h)
		inFirst := s.index[k].seg.path == before[0]
		s.mu.Unlock()
		if inFirst {
			first[h] = true
			s.Remove(h)
		}
	}
	if len(first) == 0 {
		t.Fatal("no body in the first segment")
	}
	if _, err := os.Stat(before[0]); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("empty segment kept: %v", err)
	}
	// All but one in every other segment retire: each is mostly dead.
	keep := map[string]bool{}
	bySeg := map[string]bool{}
	for _, h := range hashes {
		if first[h] {
			continue
		}
		s.mu.Lock()
		k, _ := parseHash(h)
		p := s.index[k].seg.path
		s.mu.Unlock()
		if !bySeg[p] {
			bySeg[p] = true
			keep[h] = true
			continue
		}
		s.Remove(h)
	}
	times := map[string]time.Time{}
	s.Walk(func(h string, at time.Time) error { times[h] = at; return nil })
	freed, err := s.Compact()
	if err != nil || freed == 0 {
		t.Fatalf("compact freed %d: %v", freed, err)
	}
	for h := range keep {
		if !strings.HasSuffix(readBody(t, s, h), "x\r\n") {
			t.Fatalf("kept body %s changed", h[:8])
		}
	}
	n := 0
	s.Walk(func(h string, at time.Time) error {
		n++
		if !keep[h] || !at.Equal(times[h]) {
			t.Errorf("after compaction %s written %v, was %v (kept %v)", h[:8], at, times[h], keep[h])
		}
		return nil
	})
	if n != len(keep) {
		t.Fatalf("%d bodies after compaction, want %d", n, len(keep))
	}
	if after := segments(t, dir); len(after) >= len(before)-1 {
		t.Fatalf("compaction kept %d of %d segments", len(after), len(before))
	}
}

// A body larger than the memory limit goes through a temporary file and
// reads back the same.
func TestLargeBodySpills(t *testing.T) {
	dir := t.TempDir()
	s, _ := OpenWith(dir, Options{MemoryLimit: 4096})
	body := strings.Repeat("0123456789abcdef", 64<<10) // 1 MiB
	w, _ := s.Create()
	for i := 0; i < len(body); i += 1000 {
		io.WriteString(w, body[i:min(i+1000, len(body))])
	}
	h, n, err := w.Commit()
	if err != nil || n != int64(len(body)) || h != hashOf(body) {
		t.Fatalf("commit: %v %d", err, n)
	}
	if readBody(t, s, h) != body {
		t.Fatal("large body changed")
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Fatalf("files left besides the segment: %d", len(entries))
	}
}

// Two sessions receiving the same bytes store them once.
func TestSameBodyStoredOnce(t *testing.T) {
	s, _ := Open(t.TempDir())
	a := store(t, s, "same\r\n")
	b := store(t, s, "same\r\n")
	if a != b || s.Stats().Bodies != 1 || s.Stats().DiskBytes != headerSize+6 {
		t.Fatalf("stats %+v", s.Stats())
	}
}

// A node upgraded from one file per body keeps every body.
func TestImportsFileLayout(t *testing.T) {
	dir := t.TempDir()
	body := "an old body\r\n"
	h := hashOf(body)
	os.MkdirAll(filepath.Join(dir, h[:2]), 0o700)
	os.WriteFile(filepath.Join(dir, h[:2], h), []byte(body), 0o600)
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	if readBody(t, s, h) != body {
		t.Fatal("imported body changed")
	}
	if _, err := os.Stat(filepath.Join(dir, h[:2])); !errors.Is(err, fs.ErrNotExist) {
		t.Fatal("old layout left behind")
	}
}

// After Close nothing is written.
func TestClosedStoreRefuses(t *testing.T) {
	s, _ := Open(t.TempDir())
	s.Close()
	w, _ := s.Create()
	io.WriteString(w, "late")
	if _, _, err := w.Commit(); !errors.Is(err, ErrClosed) {
		t.Fatalf("commit after close: %v", err)
	}
}

// BenchmarkConcurrentCommit is twenty sessions storing 4 KiB bodies at
// once, as the MX does under load; go test -bench ConcurrentCommit
// -benchtime 4000x ./cluster/blob. Run it on a real disk (TMPDIR), not
// tmpfs, for the fdatasyncs to cost what they do.
func BenchmarkConcurrentCommit(b *testing.B) {
	s, err := Open(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	b.SetParallelism(10) // 20 goroutines on 2 cores
	b.SetBytes(4096)
	b.RunParallel(func(pb *testing.PB) {
		body := make([]byte, 4096)
		for pb.Next() {
			rand.Read(body[:32])
			w, _ := s.Create()
			w.Write(body)
			if _, _, err := w.Commit(); err != nil {
				b.Error(err)
				return
			}
		}
	})
}
