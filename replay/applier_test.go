//go:build linux

package replay

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/writecap/writecap/journal"
)

func TestSequence(t *testing.T) {
	root := t.TempDir()
	a := openT(t, root, Options{})
	apply := func(seq uint64, data string) error {
		t.Helper()
		r := wr("f", 0, data)
		r.Seq = seq
		return a.Apply(&r)
	}
	if err := apply(100, "first"); err != nil { // any first Seq
		t.Fatal(err)
	}
	for _, seq := range []uint64{100, 1} { // re-sent: skipped silently
		if err := apply(seq, "XXXXX"); err != nil {
			t.Fatalf("seq %d: %v", seq, err)
		}
	}
	if got := readFile(t, filepath.Join(root, "f")); got != "first" {
		t.Errorf("re-sent record applied: %q", got)
	}
	err := apply(102, "gap")
	if !errors.Is(err, ErrGap) || !strings.Contains(err.Error(), "#102") || !strings.Contains(err.Error(), "expected #101") {
		t.Fatalf("gap: %v", err)
	}
	// A gap changes nothing and does not latch: the missing record may follow.
	if err := apply(101, "again"); err != nil {
		t.Fatal(err)
	}
	if got := a.Applied(); got != 101 {
		t.Errorf("Applied() = %d, want 101", got)
	}
	if got, want := a.Stats(), (Stats{Applied: 2, Skipped: 2}); got != want {
		t.Errorf("Stats() = %+v, want %+v", got, want)
	}
}

// TestLatch covers the non-path fatal errors: each latches the Applier.
func TestLatch(t *testing.T) {
	tests := []struct {
		name string
		rec  journal.Record
		want error
	}{
		{"dirty", journal.Record{Seq: 1, Op: journal.OpDirty, Path: "f", Length: 10}, ErrUnresolved},
		{"sequence zero", journal.Record{Op: journal.OpWrite, Path: "f"}, ErrMalformed},
		{"unknown op", journal.Record{Seq: 1, Op: 99, Path: "f"}, ErrMalformed},
		{"negative offset", journal.Record{Seq: 1, Op: journal.OpWrite, Path: "f", Offset: -1}, ErrMalformed},
		{"negative size", journal.Record{Seq: 1, Op: journal.OpTruncate, Path: "f", Length: -1}, ErrMalformed},
		{"punch hole without keep size", journal.Record{Seq: 1, Op: journal.OpFallocate, Path: "f", Mode: unix.FALLOC_FL_PUNCH_HOLE, Length: 1}, ErrMalformed},
		{"rename flags", journal.Record{Seq: 1, Op: journal.OpRename, Path: "a", Path2: "b", Flags: unix.RENAME_WHITEOUT}, ErrMalformed},
		{"rename into itself", journal.Record{Seq: 1, Op: journal.OpRename, Path: "a/b", Path2: "a"}, ErrMalformed},
		{"link into itself", journal.Record{Seq: 1, Op: journal.OpLink, Path: "a", Path2: "a/b"}, ErrMalformed},
		{"symlink target with NUL", journal.Record{Seq: 1, Op: journal.OpSymlink, Path: "s", Path2: "a\x00b"}, ErrMalformed},
		{"empty symlink target", journal.Record{Seq: 1, Op: journal.OpSymlink, Path: "s"}, ErrMalformed},
		{"setattr flags", journal.Record{Seq: 1, Op: journal.OpSetattr, Path: "f", Flags: 1 << 7}, ErrMalformed},
		{"prune list without final NUL", journal.Record{Seq: 1, Op: journal.OpPrune, Path: "d", Data: []byte("a\x00b")}, ErrMalformed},
		{"prune name with slash", journal.Record{Seq: 1, Op: journal.OpPrune, Path: "d", Data: []byte("a/b\x00")}, ErrMalformed},
		{"prune name dot-dot", journal.Record{Seq: 1, Op: journal.OpPrune, Data: []byte("..\x00")}, ErrMalformed},
		{"prune empty name", journal.Record{Seq: 1, Op: journal.OpPrune, Data: []byte("a\x00\x00")}, ErrMalformed},
		{"fatal errno", journal.Record{Seq: 1, Op: journal.OpWrite, Path: "f", Offset: 1 << 62, Data: []byte("x")}, unix.EFBIG},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := t.TempDir()
			mustWrite(t, filepath.Join(root, "a/b"), "")
			a := openT(t, root, Options{})
			err := a.Apply(&tt.rec)
			if !errors.Is(err, tt.want) {
				t.Fatalf("Apply = %v, want %v", err, tt.want)
			}
			if !strings.Contains(err.Error(), fmt.Sprintf("record #%d %s", tt.rec.Seq, tt.rec.Op)) {
				t.Errorf("error %q does not name the record", err)
			}
			next := wr("ok", 0, "ok")
			next.Seq = 2
			if err2 := a.Apply(&next); err2 != err {
				t.Errorf("next Apply = %v, want the latched error", err2)
			}
			if _, err := os.Lstat(filepath.Join(root, "ok")); !os.IsNotExist(err) {
				t.Error("record after the latch was applied")
			}
			if err := a.Sync(); err != nil {
				t.Errorf("Sync on a latched applier: %v", err)
			}
		})
	}
}

func TestBarrier(t *testing.T) {
	root := t.TempDir()
	a := openT(t, root, Options{})
	applyAll(t, a, numbered([]journal.Record{
		withMode(op(journal.OpMkdir, "d"), 0o755),
		wr("d/f", 0, "x"),
		wr("g", 0, "y"),
		op(journal.OpBarrier, "d/f"),
		op(journal.OpBarrier, "d"),       // a directory
		op(journal.OpBarrier, "missing"), // gone: skipped
		op(journal.OpBarrier, ""),
	}))
	if got, want := a.Stats(), (Stats{Applied: 6, Skipped: 1, Barriers: 3}); got != want {
		t.Errorf("Stats() = %+v, want %+v", got, want)
	}
	dirty := a.root.dirty
	a.cache.each(func(e *fdEntry) error {
		dirty = dirty || e.dirty
		return nil
	})
	if dirty {
		t.Error("descriptors still dirty after a full barrier")
	}
	r := wr("g", 1, "z")
	r.Seq = 8
	if err := a.Apply(&r); err != nil {
		t.Fatal(err)
	}
	if e := a.cache.get("g"); e == nil || !e.dirty {
		t.Fatal("written file not marked dirty")
	}
	if err := a.Sync(); err != nil {
		t.Fatal(err)
	}
	if e := a.cache.get("g"); e.dirty {
		t.Error("Sync left the file dirty")
	}
	if got := a.Stats().Barriers; got != 3 {
		t.Errorf("Sync counted as a barrier: %d", got)
	}
}

// TestManyFiles writes more files than MaxOpenFiles, in several rounds, with
// renames and unlinks of cached paths in between, and checks every byte and
// the descriptor count.
func TestManyFiles(t *testing.T) {
	const max, dirs, files, rounds = 4, 3, 20, 3
	root := t.TempDir()
	fds := func() int {
		t.Helper()
		ents, err := os.ReadDir("/proc/self/fd")
		if err != nil {
			t.Fatal(err)
		}
		return len(ents)
	}
	start := fds()
	a := openT(t, root, Options{MaxOpenFiles: max})
	var recs []journal.Record
	for d := range dirs {
		recs = append(recs, withMode(op(journal.OpMkdir, fmt.Sprintf("d%d", d)), 0o755))
	}
	for round := range rounds {
		for f := range files {
			for d := range dirs {
				p := fmt.Sprintf("d%d/f%d", d, f)
				recs = append(recs, wr(p, int64(round), fmt.Sprint(round)))
			}
		}
	}
	recs = append(recs,
		wr("d0/f0", 0, "0"),                  // cached now
		op2(journal.OpRename, "d0", "moved"), // invalidates d0 and d0/f0
		wr("moved/f0", 3, "m"),               // must reach the moved file
		wr("d0/f0", 0, "gone"),               // parent gone: skipped
		wr("d1/f1", 0, "1"),
		op(journal.OpUnlink, "d1/f1"), // invalidates d1/f1
		wr("d1/f1", 0, "new"),         // a new file, not the unlinked inode
	)
	applyAll(t, a, numbered(recs))

	if n := len(a.cache.byPath); n > max {
		t.Errorf("%d cached descriptors, max %d", n, max)
	}
	// Cached entries, the O_PATH root, the root directory and its syncfs descriptor.
	if n := fds() - start; n > max+3 {
		t.Errorf("%d descriptors open, want at most %d", n, max+3)
	}
	for d := range dirs {
		for f := range files {
			dir := fmt.Sprintf("d%d", d)
			want := "012"
			switch {
			case d == 0:
				dir = "moved"
				if f == 0 {
					want = "012m"
				}
			case d == 1 && f == 1:
				want = "new"
			}
			if got := readFile(t, filepath.Join(root, dir, fmt.Sprintf("f%d", f))); got != want {
				t.Errorf("%s/f%d = %q, want %q", dir, f, got, want)
			}
		}
	}
	if _, err := os.Lstat(filepath.Join(root, "d0")); !os.IsNotExist(err) {
		t.Error("write under a renamed-away directory recreated it")
	}
	if got := a.Stats().Skipped; got != 1 {
		t.Errorf("Skipped = %d, want 1", got)
	}
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	if n := fds() - start; n != 0 {
		t.Errorf("%d descriptors left after Close", n)
	}
}

func TestOpen(t *testing.T) {
	file := filepath.Join(t.TempDir(), "file")
	mustWrite(t, file, "")
	tests := []struct {
		name string
		root string
		opts Options
	}{
		{"missing root", filepath.Join(t.TempDir(), "none"), Options{}},
		{"root is a file", file, Options{}},
		{"one descriptor", t.TempDir(), Options{MaxOpenFiles: 1}},
		{"negative", t.TempDir(), Options{MaxOpenFiles: -1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if a, err := Open(tt.root, tt.opts); err == nil {
				a.Close()
				t.Fatal("Open succeeded")
			}
		})
	}
	a := openT(t, t.TempDir(), Options{})
	a.Close()
	r := wr("f", 0, "x")
	r.Seq = 1
	if err := a.Apply(&r); !errors.Is(err, ErrClosed) {
		t.Errorf("Apply after Close = %v", err)
	}
}

// TestConcurrentReads reads Applied and Stats while records are applied;
// run with -race.
func TestConcurrentReads(t *testing.T) {
	a := openT(t, t.TempDir(), Options{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for a.Applied() < 200 {
			_ = a.Stats()
		}
	}()
	for i := range 200 {
		r := wr("f", int64(i), "x")
		r.Seq = uint64(i + 1)
		if err := a.Apply(&r); err != nil {
			t.Fatal(err)
		}
	}
	<-done
}
