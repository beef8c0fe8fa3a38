package journal_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/writecap/writecap/journal"
)

// openSpool opens a spool in opts.Dir, a new temporary directory when
// empty, logging to the test's output; it is closed when the test ends.
func openSpool(t testing.TB, opts journal.SpoolOptions) *journal.Spool {
	t.Helper()
	if opts.Dir == "" {
		opts.Dir = t.TempDir()
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(t.Output(), nil))
	}
	s, err := journal.OpenSpool(opts)
	if err != nil {
		t.Fatalf("OpenSpool: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// makeBatches returns n uncompressed batches of per records each, with seqs
// from first on. Each batch has the same size while seqs stay below 128.
func makeBatches(t testing.TB, first uint64, n, per int) [][]byte {
	t.Helper()
	enc := journal.NewEncoder(journal.EncoderOptions{})
	out := make([][]byte, n)
	seq := first
	for i := range out {
		recs := make([]journal.Record, per)
		for j := range recs {
			recs[j] = journal.Record{Seq: seq, Op: journal.OpWrite, Path: "f", Data: fmt.Appendf(nil, "record %06d", seq)}
			seq++
		}
		b, err := enc.AppendBatch(nil, recs)
		if err != nil {
			t.Fatalf("AppendBatch: %v", err)
		}
		out[i] = b
	}
	return out
}

// span returns the first and last seq of a batch made by makeBatches.
func span(b []byte) (first, last uint64) {
	first = le.Uint64(b[offFirstSeq:])
	return first, first + uint64(le.Uint32(b[offCount:])) - 1
}

func appendAll(t testing.TB, s *journal.Spool, batches [][]byte) {
	t.Helper()
	for _, b := range batches {
		if err := s.Append(b); err != nil {
			first, _ := span(b)
			t.Fatalf("Append(seq %d): %v", first, err)
		}
	}
}

func sizeOf(batches [][]byte) int64 {
	n := 0
	for _, b := range batches {
		n += len(b)
	}
	return int64(n)
}

// readBatches reads n batches from c, copied, and checks that each starts
// where the one before ended.
func readBatches(t testing.TB, c *journal.Cursor, n int) [][]byte {
	t.Helper()
	var out [][]byte
	for range n {
		b, first, last, err := c.Next(context.Background())
		if err != nil {
			t.Fatalf("Next after %d batches: %v", len(out), err)
		}
		if f, l := span(b); f != first || l != last {
			t.Fatalf("Next says seqs %d to %d, the batch holds %d to %d", first, last, f, l)
		}
		if len(out) > 0 {
			if _, prev := span(out[len(out)-1]); first != prev+1 {
				t.Fatalf("batch at seq %d follows one ending at %d", first, prev)
			}
		}
		out = append(out, slices.Clone(b))
	}
	return out
}

// wantContents checks that s holds exactly want, read by a new cursor.
func wantContents(t testing.TB, s *journal.Spool, want [][]byte) {
	t.Helper()
	if len(want) == 0 {
		if s.First() != 0 || s.Bytes() != 0 {
			t.Fatalf("empty spool has First %d, Bytes %d", s.First(), s.Bytes())
		}
		return
	}
	first, _ := span(want[0])
	_, last := span(want[len(want)-1])
	if s.First() != first || s.Last() != last || s.Bytes() != sizeOf(want) {
		t.Fatalf("First %d, Last %d, Bytes %d; want %d, %d, %d", s.First(), s.Last(), s.Bytes(), first, last, sizeOf(want))
	}
	c := s.Cursor(first)
	defer c.Close()
	got := readBatches(t, c, len(want))
	for i := range want {
		if !bytes.Equal(got[i], want[i]) {
			f, _ := span(want[i])
			t.Fatalf("batch %d (seq %d) differs from the one appended", i, f)
		}
	}
}

// segmentFiles lists the segment files in dir with their sizes.
func segmentFiles(t testing.TB, dir string) map[string]int64 {
	t.Helper()
	des, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	files := map[string]int64{}
	for _, de := range des {
		if !strings.HasSuffix(de.Name(), ".wcs") {
			continue
		}
		fi, err := de.Info()
		if err != nil {
			t.Fatal(err)
		}
		files[de.Name()] = fi.Size()
	}
	return files
}

func segName(first uint64) string { return fmt.Sprintf("%020d.wcs", first) }

func TestSpoolOrder(t *testing.T) {
	batches := makeBatches(t, 1, 10, 3)
	bsize := int64(len(batches[0]))
	tests := []struct {
		name       string
		memBatches int64 // MemLimit in batches
		segBatches int64 // SegmentSize in batches; 0 for the default
		wantMem    int   // batches held in memory: the first ones
		wantFiles  int
	}{
		{name: "memory only", memBatches: 100, wantMem: 10, wantFiles: 0},
		{name: "disk only", memBatches: 0, wantMem: 0, wantFiles: 1},
		{name: "memory then spill", memBatches: 3, wantMem: 3, wantFiles: 1},
		{name: "a segment per batch", segBatches: 1, wantMem: 0, wantFiles: 10},
		{name: "spill into small segments", memBatches: 3, segBatches: 2, wantMem: 3, wantFiles: 4},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			opts := journal.SpoolOptions{Dir: t.TempDir(), MemLimit: tt.memBatches * bsize}
			if tt.segBatches > 0 {
				opts.SegmentSize = 16 + tt.segBatches*bsize
			}
			s := openSpool(t, opts)
			appendAll(t, s, batches)
			wantContents(t, s, batches)
			if got, want := s.DiskBytes(), sizeOf(batches[tt.wantMem:]); got != want {
				t.Fatalf("DiskBytes %d, want %d", got, want)
			}
			if got := len(segmentFiles(t, opts.Dir)); got != tt.wantFiles {
				t.Fatalf("%d segment files, want %d", got, tt.wantFiles)
			}
			// A cursor starting inside a batch gets that whole batch.
			c := s.Cursor(5)
			defer c.Close()
			if got := readBatches(t, c, 1)[0]; !bytes.Equal(got, batches[1]) {
				first, last := span(got)
				t.Fatalf("Cursor(5) starts with the batch of seqs %d to %d, want 4 to 6", first, last)
			}
		})
	}
}

func TestSpoolMixed(t *testing.T) {
	b := makeBatches(t, 1, 5, 2)
	bsize := int64(len(b[0]))
	dir := t.TempDir()
	s := openSpool(t, journal.SpoolOptions{Dir: dir, MemLimit: 2 * bsize})
	appendAll(t, s, b[:3]) // memory, memory, disk
	if err := s.Release(2); err != nil {
		t.Fatal(err)
	}
	appendAll(t, s, b[3:4]) // memory again, after a disk batch
	if got, want := s.DiskBytes(), bsize; got != want {
		t.Fatalf("memory, disk, memory: DiskBytes %d, want %d", got, want)
	}
	wantContents(t, s, b[1:4])

	// Memory is full again: the memory batch after the disk one goes to
	// disk before the new one, so that the disk's seqs stay consecutive.
	appendAll(t, s, b[4:])
	if got, want := s.DiskBytes(), 3*bsize; got != want {
		t.Fatalf("DiskBytes %d, want %d", got, want)
	}
	wantContents(t, s, b[1:])
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	// The memory batch is gone with the process; the disk ones remain.
	s = openSpool(t, journal.SpoolOptions{Dir: dir, MemLimit: 2 * bsize})
	wantContents(t, s, b[2:])
}

// TestSpoolSpillAgain spills, drains the disk, holds batches in memory and
// spills again: the old segment must go, or the seqs on disk would break.
func TestSpoolSpillAgain(t *testing.T) {
	b := makeBatches(t, 1, 4, 2)
	dir := t.TempDir()
	opts := journal.SpoolOptions{Dir: dir, MemLimit: int64(len(b[0]))}
	s := openSpool(t, opts)
	appendAll(t, s, b[:2]) // memory, disk
	if err := s.Release(4); err != nil {
		t.Fatal(err)
	}
	appendAll(t, s, b[2:]) // memory, disk
	wantContents(t, s, b[2:])
	if files := segmentFiles(t, dir); len(files) != 1 || files[segName(7)] == 0 {
		t.Fatalf("segment files %v, want only %s", files, segName(7))
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openSpool(t, opts)
	wantContents(t, s, b[3:])
}

// TestSpoolNoSpace fills a small tmpfs: the batch that does not fit is
// refused with ErrSpoolFull and leaves nothing behind.
func TestSpoolNoSpace(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "tmpfs")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("tmpfs", dir, "tmpfs", 0, "size=256k"); err != nil {
		t.Skipf("mount tmpfs: %v", err)
	}
	t.Cleanup(func() { unix.Unmount(dir, 0) })
	b := writeBatches(t, 1, 10, 40_000)
	opts := journal.SpoolOptions{Dir: dir, SegmentSize: 16 + 2*int64(len(b[0]))}
	s := openSpool(t, opts)
	fit := 0
	var err error
	for ; fit < len(b); fit++ {
		if err = s.Append(b[fit]); err != nil {
			break
		}
	}
	if !journal.IsSpoolFull(err) || !errors.Is(err, unix.ENOSPC) {
		t.Fatalf("Append of batch %d: %v, want ErrSpoolFull from ENOSPC", fit, err)
	}
	wantContents(t, s, b[:fit])
	var onDisk int64
	for _, size := range segmentFiles(t, dir) {
		onDisk += size - 16
	}
	if onDisk != sizeOf(b[:fit]) {
		t.Fatalf("segments hold %d bytes of batches, want the %d accepted", onDisk, sizeOf(b[:fit]))
	}
	// Releasing deletes whole segments, which makes room for the batch.
	if err := s.Release(2); err != nil {
		t.Fatal(err)
	}
	appendAll(t, s, b[fit:fit+1])
	wantContents(t, s, b[2:fit+1])
}

func TestSpoolReleaseAtSlowestCursor(t *testing.T) {
	b := makeBatches(t, 1, 12, 2)
	dir := t.TempDir()
	s := openSpool(t, journal.SpoolOptions{Dir: dir, MemLimit: 4 * int64(len(b[0])), SegmentSize: 16 + 2*int64(len(b[0]))})
	appendAll(t, s, b)
	fast, slow := s.Cursor(1), s.Cursor(1)
	defer fast.Close()
	defer slow.Close()
	readBatches(t, fast, 9)
	got := readBatches(t, slow, 3)
	_, upTo := span(got[2])
	if err := s.Release(upTo); err != nil { // the slowest cursor's position
		t.Fatal(err)
	}
	wantContents(t, s, b[3:])
	// The last eight batches are on disk, two per segment, none released.
	if got, want := len(segmentFiles(t, dir)), 4; got != want {
		t.Fatalf("%d segment files, want %d", got, want)
	}
	if rest := readBatches(t, fast, 3); !bytes.Equal(rest[2], b[11]) {
		t.Fatal("fast cursor did not end at the last batch")
	}
	if rest := readBatches(t, slow, 9); !bytes.Equal(rest[0], b[3]) || !bytes.Equal(rest[8], b[11]) {
		t.Fatal("slow cursor did not go on from where it was")
	}
	if err := s.Release(s.Last()); err != nil {
		t.Fatal(err)
	}
	if s.Bytes() != 0 || s.DiskBytes() != 0 || s.First() != 0 || s.Last() != 24 {
		t.Fatalf("after releasing all: Bytes %d, DiskBytes %d, First %d, Last %d", s.Bytes(), s.DiskBytes(), s.First(), s.Last())
	}
	// The newest segment stays: it is how a reopened spool knows Last.
	if files := segmentFiles(t, dir); len(files) != 1 || files[segName(21)] == 0 {
		t.Fatalf("segment files %v, want only %s", files, segName(21))
	}
}

func TestSpoolGap(t *testing.T) {
	tests := []struct {
		name     string
		memLimit int64
		first    uint64 // the first batch's first seq
		release  uint64
		from     uint64
	}{
		{name: "before the first batch", first: 10, from: 5},
		{name: "released, memory", memLimit: 1 << 20, first: 1, release: 4, from: 3},
		{name: "released, disk", first: 1, release: 4, from: 3},
		{name: "everything released", first: 1, release: 100, from: 12},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := openSpool(t, journal.SpoolOptions{MemLimit: tt.memLimit})
			appendAll(t, s, makeBatches(t, tt.first, 4, 3))
			if err := s.Release(tt.release); err != nil {
				t.Fatal(err)
			}
			c := s.Cursor(tt.from)
			defer c.Close()
			if _, _, _, err := c.Next(context.Background()); !errors.Is(err, journal.ErrGap) {
				t.Fatalf("Next: %v, want ErrGap", err)
			}
		})
	}
}

func TestSpoolGapBehindCursor(t *testing.T) {
	for _, memLimit := range []int64{0, 1 << 20} {
		t.Run(fmt.Sprint("MemLimit=", memLimit), func(t *testing.T) {
			s := openSpool(t, journal.SpoolOptions{MemLimit: memLimit})
			appendAll(t, s, makeBatches(t, 1, 4, 3))
			c := s.Cursor(1)
			defer c.Close()
			readBatches(t, c, 1)
			if err := s.Release(9); err != nil {
				t.Fatal(err)
			}
			_, _, _, err := c.Next(context.Background())
			if !errors.Is(err, journal.ErrGap) || !strings.Contains(err.Error(), "seq 4 is not held") {
				t.Fatalf("Next: %v, want ErrGap naming seq 4", err)
			}
		})
	}
}

func TestSpoolReopen(t *testing.T) {
	b := makeBatches(t, 1, 6, 2)
	bsize := int64(len(b[0]))
	tests := []struct {
		name      string
		segSize   int64
		release   uint64
		reset     uint64 // Reset to this when non-zero
		want      [][]byte
		wantLast  uint64
		wantFiles []string
	}{
		{name: "one segment", want: b, wantLast: 12, wantFiles: []string{segName(1)}},
		{name: "a segment per batch", segSize: 1, want: b, wantLast: 12,
			wantFiles: []string{segName(1), segName(3), segName(5), segName(7), segName(9), segName(11)}},
		{name: "partly released", segSize: 16 + 2*bsize, release: 6, want: b[2:], wantLast: 12,
			wantFiles: []string{segName(5), segName(9)}},
		// The newest segment keeps its released batches: they come back.
		{name: "all released", segSize: 16 + 2*bsize, release: 12, want: b[4:], wantLast: 12,
			wantFiles: []string{segName(9)}},
		{name: "reset", reset: 500, wantLast: 500, wantFiles: []string{segName(501)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			opts := journal.SpoolOptions{Dir: t.TempDir(), SegmentSize: tt.segSize}
			s := openSpool(t, opts)
			appendAll(t, s, b)
			if err := s.Release(tt.release); err != nil {
				t.Fatal(err)
			}
			if tt.reset != 0 {
				if err := s.Reset(tt.reset); err != nil {
					t.Fatal(err)
				}
			}
			if err := s.Sync(); err != nil {
				t.Fatal(err)
			}
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			s = openSpool(t, opts)
			wantContents(t, s, tt.want)
			if s.Last() != tt.wantLast {
				t.Fatalf("Last %d, want %d", s.Last(), tt.wantLast)
			}
			if got := slices.Sorted(func(yield func(string) bool) {
				for name := range segmentFiles(t, opts.Dir) {
					if !yield(name) {
						return
					}
				}
			}); !slices.Equal(got, tt.wantFiles) {
				t.Fatalf("segment files %v, want %v", got, tt.wantFiles)
			}
			// It goes on where it stood.
			next := makeBatches(t, tt.wantLast+1, 1, 2)
			appendAll(t, s, next)
			wantContents(t, s, slices.Concat(tt.want, next))
		})
	}
}

func TestSpoolFull(t *testing.T) {
	b := makeBatches(t, 1, 4, 2)
	bsize := int64(len(b[0]))
	tests := []struct {
		name string
		opts journal.SpoolOptions
		// fit is how many of the batches are accepted; the next one is refused.
		fit     int
		wantMsg string
	}{
		{name: "MaxBytes in memory", opts: journal.SpoolOptions{MemLimit: 1 << 20, MaxBytes: 3*bsize + 1}, fit: 3, wantMsg: "would pass MaxBytes"},
		{name: "MaxBytes on disk", opts: journal.SpoolOptions{MaxBytes: 2 * bsize}, fit: 2, wantMsg: "would pass MaxBytes"},
		{name: "MaxBytes across memory and disk", opts: journal.SpoolOptions{MemLimit: bsize, MaxBytes: 2 * bsize}, fit: 2, wantMsg: "would pass MaxBytes"},
		{name: "MinFree", opts: journal.SpoolOptions{MinFree: 1 << 62}, fit: 0, wantMsg: "below MinFree"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := openSpool(t, tt.opts)
			appendAll(t, s, b[:tt.fit])
			bytesBefore, diskBefore := s.Bytes(), s.DiskBytes()
			err := s.Append(b[tt.fit])
			if !journal.IsSpoolFull(err) || !strings.Contains(err.Error(), tt.wantMsg) {
				t.Fatalf("Append: %v, want ErrSpoolFull saying %q", err, tt.wantMsg)
			}
			// Nothing was added.
			wantContents(t, s, b[:tt.fit])
			if s.Bytes() != bytesBefore || s.DiskBytes() != diskBefore {
				t.Fatalf("Bytes %d, DiskBytes %d after the refusal; were %d, %d", s.Bytes(), s.DiskBytes(), bytesBefore, diskBefore)
			}
			if tt.fit == 0 {
				return
			}
			// Releasing makes room for the same batch.
			_, upTo := span(b[0])
			if err := s.Release(upTo); err != nil {
				t.Fatal(err)
			}
			appendAll(t, s, b[tt.fit:tt.fit+1])
			wantContents(t, s, b[1:tt.fit+1])
		})
	}
}

func TestSpoolMinFreeSparesMemory(t *testing.T) {
	s := openSpool(t, journal.SpoolOptions{MemLimit: 1 << 20, MinFree: 1 << 62})
	b := makeBatches(t, 1, 3, 2)
	appendAll(t, s, b) // memory batches need no disk space
	wantContents(t, s, b)
}

func TestSpoolReset(t *testing.T) {
	for _, memLimit := range []int64{0, 1 << 20} {
		t.Run(fmt.Sprint("MemLimit=", memLimit), func(t *testing.T) {
			dir := t.TempDir()
			s := openSpool(t, journal.SpoolOptions{Dir: dir, MemLimit: memLimit})
			appendAll(t, s, makeBatches(t, 1, 5, 2))
			behind, ahead := s.Cursor(3), s.Cursor(101)
			defer behind.Close()
			defer ahead.Close()
			if err := s.Reset(100); err != nil {
				t.Fatal(err)
			}
			if s.First() != 0 || s.Last() != 100 || s.Bytes() != 0 || s.DiskBytes() != 0 {
				t.Fatalf("after Reset(100): First %d, Last %d, Bytes %d, DiskBytes %d", s.First(), s.Last(), s.Bytes(), s.DiskBytes())
			}
			if files := segmentFiles(t, dir); len(files) != 1 || files[segName(101)] != 16 {
				t.Fatalf("segment files %v, want only an empty %s", files, segName(101))
			}
			if _, _, _, err := behind.Next(context.Background()); !errors.Is(err, journal.ErrGap) {
				t.Fatalf("cursor behind the reset: %v, want ErrGap", err)
			}
			if err := s.Append(makeBatches(t, 50, 1, 1)[0]); !errors.Is(err, journal.ErrInvalid) {
				t.Fatalf("Append(seq 50) after Reset(100): %v, want ErrInvalid", err)
			}
			next := makeBatches(t, 101, 2, 2)
			appendAll(t, s, next)
			if got := readBatches(t, ahead, 2); !bytes.Equal(got[0], next[0]) || !bytes.Equal(got[1], next[1]) {
				t.Fatal("cursor ahead of the reset did not read the new batches")
			}
		})
	}
}

func TestSpoolAppendRejects(t *testing.T) {
	b := makeBatches(t, 1, 3, 2)
	zero, err := journal.NewEncoder(journal.EncoderOptions{}).AppendBatch(nil, []journal.Record{{Seq: 0, Op: journal.OpBarrier}})
	if err != nil {
		t.Fatal(err)
	}
	flipped := slices.Clone(b[1])
	flipped[len(flipped)-1] ^= 1
	tests := []struct {
		name  string
		batch []byte
		msg   string
		crc   bool // only Append finds it: AppendChecked leaves the CRC to its caller
	}{
		{name: "empty", batch: nil, msg: "header has 0 of 32 bytes"},
		{name: "garbage", batch: []byte("not a batch at all, but long enough to hold a header"), msg: "bad magic"},
		{name: "cut short", batch: b[1][:len(b[1])-1], msg: "payload has"},
		{name: "two batches", batch: slices.Concat(b[1], b[2]), msg: "bytes after the batch"},
		{name: "bad crc", batch: flipped, msg: "crc mismatch", crc: true},
		{name: "seq gap", batch: b[2], msg: "batch starts at seq 5, want 3"},
		{name: "seq repeated", batch: b[0], msg: "batch starts at seq 1, want 3"},
	}
	appends := []struct {
		name    string
		append  func(*journal.Spool, []byte) error
		checked bool
	}{
		{"Append", (*journal.Spool).Append, false},
		{"AppendChecked", (*journal.Spool).AppendChecked, true},
	}
	for _, tt := range tests {
		for _, a := range appends {
			if tt.crc && a.checked {
				continue
			}
			t.Run(tt.name+"/"+a.name, func(t *testing.T) {
				s := openSpool(t, journal.SpoolOptions{})
				appendAll(t, s, b[:1])
				err := a.append(s, tt.batch)
				if !errors.Is(err, journal.ErrInvalid) || !strings.Contains(err.Error(), tt.msg) {
					t.Fatalf("%s: %v, want ErrInvalid saying %q", a.name, err, tt.msg)
				}
				wantContents(t, s, b[:1])
			})
		}
	}
	t.Run("seq 0", func(t *testing.T) {
		s := openSpool(t, journal.SpoolOptions{})
		if err := s.Append(zero); !errors.Is(err, journal.ErrInvalid) {
			t.Fatalf("Append(seq 0): %v, want ErrInvalid", err)
		}
	})
	t.Run("closed", func(t *testing.T) {
		s := openSpool(t, journal.SpoolOptions{})
		s.Close()
		if err := s.Append(b[0]); !errors.Is(err, journal.ErrClosed) {
			t.Fatalf("Append after Close: %v, want ErrClosed", err)
		}
	})
}

func TestCursorNextBlocks(t *testing.T) {
	b := makeBatches(t, 1, 2, 2)
	tests := []struct {
		name string
		// wake ends the wait of a Next that cancel's context governs.
		wake    func(t *testing.T, s *journal.Spool, c *journal.Cursor, cancel context.CancelFunc)
		want    []byte // the batch Next returns, or
		wantErr error
	}{
		{name: "append", want: b[1], wake: func(t *testing.T, s *journal.Spool, _ *journal.Cursor, _ context.CancelFunc) {
			appendAll(t, s, b[1:])
		}},
		{name: "context", wantErr: context.Canceled, wake: func(_ *testing.T, _ *journal.Spool, _ *journal.Cursor, cancel context.CancelFunc) {
			cancel()
		}},
		{name: "spool closed", wantErr: journal.ErrClosed, wake: func(_ *testing.T, s *journal.Spool, _ *journal.Cursor, _ context.CancelFunc) {
			s.Close()
		}},
		{name: "cursor closed", wantErr: journal.ErrClosed, wake: func(_ *testing.T, _ *journal.Spool, c *journal.Cursor, _ context.CancelFunc) {
			c.Close()
		}},
	}
	for _, memLimit := range []int64{0, 1 << 20} {
		for _, tt := range tests {
			t.Run(fmt.Sprintf("%s/MemLimit=%d", tt.name, memLimit), func(t *testing.T) {
				s := openSpool(t, journal.SpoolOptions{MemLimit: memLimit})
				appendAll(t, s, b[:1])
				c := s.Cursor(1)
				defer c.Close()
				readBatches(t, c, 1)
				ctx, cancel := context.WithCancel(context.Background())
				defer cancel()
				type result struct {
					b   []byte
					err error
				}
				done := make(chan result)
				go func() {
					got, _, _, err := c.Next(ctx)
					done <- result{slices.Clone(got), err}
				}()
				// Nothing can end the Next but wake: whatever it returns
				// shows it waited for wake.
				tt.wake(t, s, c, cancel)
				r := <-done
				if !errors.Is(r.err, tt.wantErr) || !bytes.Equal(r.b, tt.want) {
					t.Fatalf("Next: %d bytes, %v; want %d bytes, %v", len(r.b), r.err, len(tt.want), tt.wantErr)
				}
			})
		}
	}
}

// TestSpoolConcurrent runs an appender, three cursors and a releaser that
// follows the slowest cursor at once; run it with -race.
func TestSpoolConcurrent(t *testing.T) {
	const n, readers = 300, 3
	b := makeBatches(t, 1, n, 3)
	bsize := int64(len(b[0]))
	s := openSpool(t, journal.SpoolOptions{MemLimit: 10 * bsize, SegmentSize: 16 + 8*bsize})

	type progress struct{ reader, upTo uint64 }
	progressc := make(chan progress)
	errc := make(chan error, readers+2)
	var appender, cursors sync.WaitGroup
	appender.Go(func() {
		for i, batch := range b {
			if err := s.Append(batch); err != nil {
				errc <- fmt.Errorf("Append %d: %w", i, err)
				return
			}
			if i%16 == 0 {
				if err := s.Sync(); err != nil {
					errc <- err
					return
				}
			}
		}
	})
	for r := range uint64(readers) {
		cursors.Go(func() {
			c := s.Cursor(1)
			defer c.Close()
			for i := range b {
				got, first, last, err := c.Next(context.Background())
				if err != nil {
					errc <- fmt.Errorf("reader %d, batch %d: %w", r, i, err)
					return
				}
				if !bytes.Equal(got, b[i]) {
					errc <- fmt.Errorf("reader %d: batch %d (seqs %d to %d) differs from the one appended", r, i, first, last)
					return
				}
				progressc <- progress{r, last}
			}
		})
	}
	go func() {
		cursors.Wait()
		close(progressc)
	}()
	pos := make([]uint64, readers)
	for p := range progressc {
		pos[p.reader] = p.upTo
		if err := s.Release(slices.Min(pos)); err != nil {
			t.Error(err)
		}
	}
	appender.Wait()
	close(errc)
	for err := range errc {
		t.Error(err)
	}
	if s.Bytes() != 0 || s.Last() != 3*n {
		t.Fatalf("at the end: Bytes %d, Last %d", s.Bytes(), s.Last())
	}
}

// TestSpoolReleaseUnderCursor releases batches while a cursor reads them
// from disk: every batch the cursor gets is whole, and a batch it lost says
// ErrGap. Run it with -race.
func TestSpoolReleaseUnderCursor(t *testing.T) {
	const n = 200
	b := makeBatches(t, 1, n, 3)
	s := openSpool(t, journal.SpoolOptions{SegmentSize: 16 + 4*int64(len(b[0]))})
	appendAll(t, s, b)
	read := make(chan uint64) // the last seq of each batch the cursor got
	errc := make(chan error, 1)
	go func() {
		defer close(read)
		c := s.Cursor(1)
		defer func() { c.Close() }()
		for {
			got, first, last, err := c.Next(context.Background())
			switch {
			case errors.Is(err, journal.ErrGap):
				from := s.First()
				if from == 0 {
					return // everything was released
				}
				c.Close()
				c = s.Cursor(from)
				continue
			case err != nil:
				errc <- err
				return
			case !bytes.Equal(got, b[(first-1)/3]):
				errc <- fmt.Errorf("batch of seqs %d to %d differs from the one appended", first, last)
				return
			}
			read <- last
			if last == 3*n {
				return
			}
		}
	}()
	// Release two batches for each one read, so the cursor falls behind.
	var upTo uint64
	for range read {
		upTo = min(upTo+6, 3*n)
		if err := s.Release(upTo); err != nil {
			t.Fatal(err)
		}
	}
	select {
	case err := <-errc:
		t.Fatal(err)
	default:
	}
}

func TestSpoolDiskRot(t *testing.T) {
	dir := t.TempDir()
	s := openSpool(t, journal.SpoolOptions{Dir: dir})
	b := makeBatches(t, 1, 3, 2)
	appendAll(t, s, b)
	// Flip a byte of the second batch behind the spool's back.
	path := filepath.Join(dir, segName(1))
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	at := int64(16 + len(b[0]) + 40)
	if _, err := f.WriteAt([]byte{0xff}, at); err != nil {
		t.Fatal(err)
	}
	f.Close()
	c := s.Cursor(1)
	defer c.Close()
	readBatches(t, c, 1)
	_, _, _, err = c.Next(context.Background())
	want := fmt.Sprintf("journal: segment %s: batch at offset %d: crc mismatch", path, 16+len(b[0]))
	if !journal.IsCorrupt(err) || !strings.HasPrefix(err.Error(), want) {
		t.Fatalf("Next: %v, want ErrCorrupt starting %q", err, want)
	}
}

func TestSpoolOpenedOnce(t *testing.T) {
	dir := t.TempDir()
	s := openSpool(t, journal.SpoolOptions{Dir: dir})
	if _, err := journal.OpenSpool(journal.SpoolOptions{Dir: dir}); err == nil || !strings.Contains(err.Error(), dir) {
		t.Fatalf("second OpenSpool of %s: %v, want an error naming it", dir, err)
	}
	s.Close()
	openSpool(t, journal.SpoolOptions{Dir: dir})
}

// writeBatches returns n batches of one write of size bytes each, seqs from
// first on.
func writeBatches(t testing.TB, first uint64, n, size int) [][]byte {
	t.Helper()
	data := bytes.Repeat([]byte("tuple 0001 xmin 42 "), size/19+1)[:size]
	out := make([][]byte, n)
	for i := range out {
		out[i] = encode(t, false, []journal.Record{{Seq: first + uint64(i), Op: journal.OpWrite, Path: "data/base/16384/2619", Data: data}})
	}
	return out
}

// benchAppend appends batches round and round, with Reset (not timed) between
// rounds, so that disk and memory use stay bounded; with sync, every Append
// is followed by Sync, as on a replica.
func benchAppend(b *testing.B, opts journal.SpoolOptions, batches [][]byte, sync bool) {
	opts.Logger = slog.New(slog.DiscardHandler)
	s := openSpool(b, opts)
	b.SetBytes(int64(len(batches[0])))
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if i == len(batches) {
			b.StopTimer()
			if err := s.Reset(0); err != nil {
				b.Fatal(err)
			}
			i = 0
			b.StartTimer()
		}
		if err := s.Append(batches[i]); err != nil {
			b.Fatal(err)
		}
		if sync {
			if err := s.Sync(); err != nil {
				b.Fatal(err)
			}
		}
		i++
	}
}

func BenchmarkSpoolAppendDisk(b *testing.B) {
	batches := writeBatches(b, 1, 64, 1<<20)
	b.Run("write", func(b *testing.B) { benchAppend(b, journal.SpoolOptions{}, batches, false) })
	b.Run("write+sync", func(b *testing.B) { benchAppend(b, journal.SpoolOptions{}, batches, true) })
}

func BenchmarkSpoolAppendMem(b *testing.B) {
	for _, size := range []int{4 << 10, 64 << 10} {
		b.Run(fmt.Sprintf("%dKiB", size>>10), func(b *testing.B) {
			benchAppend(b, journal.SpoolOptions{MemLimit: 1 << 30}, writeBatches(b, 1, 64<<20/size, size), false)
		})
	}
}
