package journal_test

import (
	"bytes"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/writecap/writecap/journal"
)

// segHeader is a segment file's header, restated here to pin the format.
func segHeader(first uint64) []byte {
	h := []byte("WCJS\x01\x00\x00\x00")
	return le.AppendUint64(h, first)
}

func TestSegmentLayout(t *testing.T) {
	b := makeBatches(t, 5, 5, 2)
	dir := t.TempDir()
	s := openSpool(t, journal.SpoolOptions{Dir: dir, SegmentSize: 16 + 3*int64(len(b[0]))})
	appendAll(t, s, b)
	if err := s.Sync(); err != nil {
		t.Fatal(err)
	}
	want := map[string][]byte{
		"00000000000000000005.wcs": slices.Concat(segHeader(5), b[0], b[1], b[2]),
		"00000000000000000011.wcs": slices.Concat(segHeader(11), b[3], b[4]),
	}
	if files := segmentFiles(t, dir); len(files) != len(want) {
		t.Fatalf("segment files %v, want %d", files, len(want))
	}
	for name, w := range want {
		got, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, w) {
			t.Fatalf("%s:\n got % x\nwant % x", name, got, w)
		}
	}
}

func TestSegmentForeignFiles(t *testing.T) {
	dir := t.TempDir()
	for _, name := range []string{"notes.txt", "5.wcs", "00000000000000000000.wcs", "99999999999999999999.wcs"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte("not a segment"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Mkdir(filepath.Join(dir, segName(7)), 0o700); err != nil {
		t.Fatal(err)
	}
	s := openSpool(t, journal.SpoolOptions{Dir: dir})
	if s.Last() != 0 || s.Bytes() != 0 {
		t.Fatalf("foreign files made Last %d, Bytes %d", s.Last(), s.Bytes())
	}
	if got := len(segmentFiles(t, dir)); got != 4 {
		t.Fatalf("%d .wcs entries left, want all 4", got)
	}
}

// TestSegmentRepair damages a spool of three segments of two batches each
// and checks what OpenSpool keeps, what it logs and that the spool goes on.
func TestSegmentRepair(t *testing.T) {
	b := makeBatches(t, 1, 6, 2) // seqs 1-2, 3-4, ..., 11-12
	bsize := int64(len(b[0]))
	segs := []string{segName(1), segName(5), segName(9)}
	end := 16 + 2*bsize // a whole segment
	second := 16 + bsize

	type damage func(t *testing.T, dir string)
	truncate := func(seg int, size int64) damage {
		return func(t *testing.T, dir string) {
			t.Helper()
			if err := os.Truncate(filepath.Join(dir, segs[seg]), size); err != nil {
				t.Fatal(err)
			}
		}
	}
	flip := func(seg int, at int64) damage {
		return func(t *testing.T, dir string) {
			t.Helper()
			path := filepath.Join(dir, segs[seg])
			data, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			data[at] ^= 0x10
			if err := os.WriteFile(path, data, 0o600); err != nil {
				t.Fatal(err)
			}
		}
	}
	appendTo := func(seg int, junk []byte) damage {
		return func(t *testing.T, dir string) {
			t.Helper()
			f, err := os.OpenFile(filepath.Join(dir, segs[seg]), os.O_WRONLY|os.O_APPEND, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			if _, err := f.Write(junk); err != nil {
				t.Fatal(err)
			}
		}
	}
	remove := func(seg int) damage {
		return func(t *testing.T, dir string) {
			t.Helper()
			if err := os.Remove(filepath.Join(dir, segs[seg])); err != nil {
				t.Fatal(err)
			}
		}
	}

	tests := []struct {
		name   string
		damage damage
		keep   int              // batches kept
		files  map[string]int64 // segment files and sizes after the repair
		log    string           // what the warning says, with file= and offset=
	}{
		{name: "torn payload of the last batch", damage: truncate(2, end-5), keep: 5,
			files: map[string]int64{segs[0]: end, segs[1]: end, segs[2]: second},
			log:   fmt.Sprintf("file=%%s/%s offset=%d", segs[2], second)},
		{name: "torn header of the last batch", damage: truncate(2, second+10), keep: 5,
			files: map[string]int64{segs[0]: end, segs[1]: end, segs[2]: second},
			log:   "header has 10 of 32 bytes"},
		{name: "flipped byte in the last batch", damage: flip(2, end-1), keep: 5,
			files: map[string]int64{segs[0]: end, segs[1]: end, segs[2]: second},
			log:   "crc mismatch"},
		{name: "garbage after the last batch", damage: appendTo(2, []byte("junk")), keep: 6,
			files: map[string]int64{segs[0]: end, segs[1]: end, segs[2]: end},
			log:   fmt.Sprintf("offset=%d", end)},
		{name: "flipped byte in the first batch of the last segment", damage: flip(2, 16+40), keep: 4,
			files: map[string]int64{segs[0]: end, segs[1]: end, segs[2]: 16},
			log:   "offset=16"},
		{name: "corrupt middle segment", damage: flip(1, second+40), keep: 3,
			files: map[string]int64{segs[0]: end, segs[1]: second},
			log:   fmt.Sprintf("file=%%s/%s offset=%d", segs[1], second)},
		{name: "bad header in the middle segment", damage: flip(1, 2), keep: 2,
			files: map[string]int64{segs[0]: end},
			log:   `bad magic \"WCZS\"`},
		{name: "torn segment header", damage: truncate(2, 5), keep: 4,
			files: map[string]int64{segs[0]: end, segs[1]: end},
			log:   "header: 5 of 16 bytes"},
		{name: "seq break between segments", damage: remove(1), keep: 2,
			files: map[string]int64{segs[0]: end},
			log:   fmt.Sprintf("starts at seq 9, but %%s/%s ends at seq 4", segs[0])},
		{name: "header and name disagree", damage: flip(2, 8), keep: 4,
			files: map[string]int64{segs[0]: end, segs[1]: end},
			log:   "first seq 25 at byte 8, the name says 9"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			opts := journal.SpoolOptions{Dir: dir, SegmentSize: end}
			s := openSpool(t, opts)
			appendAll(t, s, b)
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			tt.damage(t, dir)

			var log bytes.Buffer
			opts.Logger = slog.New(slog.NewTextHandler(&log, nil))
			s = openSpool(t, opts)
			t.Log(log.String())
			wantContents(t, s, b[:tt.keep])
			_, last := span(b[tt.keep-1])
			if s.Last() != last {
				t.Fatalf("Last %d, want %d", s.Last(), last)
			}
			if got := segmentFiles(t, dir); !mapsEqual(got, tt.files) {
				t.Fatalf("segment files %v, want %v", got, tt.files)
			}
			want := tt.log
			if strings.Contains(want, "%s") {
				want = fmt.Sprintf(want, dir)
			}
			if !strings.Contains(log.String(), "level=WARN") || !strings.Contains(log.String(), want) {
				t.Fatalf("log does not warn with %q:\n%s", want, log.String())
			}

			// The spool goes on from the last good batch, and opens again
			// without complaint.
			next := makeBatches(t, last+1, 1, 2)
			appendAll(t, s, next)
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			log.Reset()
			s = openSpool(t, opts)
			if strings.Contains(log.String(), "level=WARN") {
				t.Fatalf("second open warns:\n%s", log.String())
			}
			wantContents(t, s, slices.Concat(b[:tt.keep], next))
		})
	}
}

func mapsEqual(a, b map[string]int64) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}
