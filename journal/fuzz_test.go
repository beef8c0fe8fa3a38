package journal_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/writecap/writecap/journal"
)

// fuzzSeeds are small valid batches, whole and cut short. Small, because the
// fuzzer's minimizer takes time quadratic in an input's length.
func fuzzSeeds(t testing.TB) [][]byte {
	t.Helper()
	small := []journal.Record{
		{Seq: 7, Op: journal.OpWrite, Path: "f", Offset: 4096, Data: bytes.Repeat([]byte("ab"), 24)},
		{Seq: 8, Op: journal.OpSetattr, Path: "f", Flags: journal.SetMode | journal.SetMtime, Mode: 0o644, UID: 1, GID: 2, Atime: -1, Mtime: 1 << 40},
		{Seq: 9, Op: journal.OpRename, Path: "f", Path2: "g", Flags: 1},
		{Seq: 10, Op: journal.OpBarrier},
	}
	var seeds [][]byte
	for _, compress := range []bool{false, true} {
		for _, recs := range [][]journal.Record{small, small[:1], small[3:]} {
			b := encode(t, compress, recs)
			seeds = append(seeds, b, b[:len(b)-1])
		}
	}
	return seeds
}

func FuzzDecodeBatch(f *testing.F) {
	for _, b := range fuzzSeeds(f) {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		checkDecode(t, b)
		// Mutations almost never keep the CRC right; resealing lets the
		// fuzzer reach the header checks, lz4 and msgpack behind it.
		if len(b) >= hdrSize {
			sealed := reseal(slices.Clone(b))
			checkDecode(t, sealed)
			checkDecodeChecked(t, sealed)
		}
	})
}

// checkDecodeChecked checks that, on a batch whose CRC is right, an aliasing
// DecodeChecked agrees with DecodeBatch: the same records or the same error.
func checkDecodeChecked(t *testing.T, b []byte) {
	t.Helper()
	want, wn, werr := journal.DecodeBatch(b, nil)
	d := journal.Decoder{Alias: true}
	got, n, err := d.DecodeChecked(b, nil)
	if (err == nil) != (werr == nil) || err != nil && err.Error() != werr.Error() || n != wn {
		t.Fatalf("DecodeChecked: n=%d %v; DecodeBatch: n=%d %v", n, err, wn, werr)
	}
	if err == nil {
		equalRecords(t, got, want)
	}
}

// checkDecode decodes b and, if that works, checks that the records
// encode again, both ways, to batches that decode to the same records.
func checkDecode(t *testing.T, b []byte) {
	t.Helper()
	recs, n, err := journal.DecodeBatch(b, nil)
	if err != nil {
		if journal.IsCorrupt(err) == journal.IsTruncated(err) {
			t.Fatalf("error %q is not exactly one of corrupt and truncated", err)
		}
		if n != 0 || len(recs) != 0 {
			t.Fatalf("error %v with n=%d and %d records", err, n, len(recs))
		}
		return
	}
	if n < hdrSize || n > len(b) || len(recs) == 0 {
		t.Fatalf("n=%d of %d bytes, %d records", n, len(b), len(recs))
	}
	for _, compress := range []bool{false, true} {
		again, err := journal.NewEncoder(journal.EncoderOptions{Compress: compress}).AppendBatch(nil, recs)
		if err != nil {
			t.Fatalf("re-encoding decoded records (compress=%v): %v", compress, err)
		}
		back, m, err := journal.DecodeBatch(again, nil)
		if err != nil || m != len(again) {
			t.Fatalf("decoding the re-encoded batch: n=%d of %d, %v", m, len(again), err)
		}
		if !reflect.DeepEqual(back, recs) {
			t.Fatalf("records changed through re-encoding (compress=%v)", compress)
		}
	}
}

func FuzzReader(f *testing.F) {
	seeds := fuzzSeeds(f)
	for i, b := range seeds {
		f.Add(b)
		f.Add(slices.Concat(b, seeds[(i+4)%len(seeds)]))
	}
	f.Fuzz(func(t *testing.T, stream []byte) {
		checkReader(t, stream)
		if len(stream) >= hdrSize {
			checkReader(t, reseal(slices.Clone(stream))) // see FuzzDecodeBatch
		}
	})
}

// checkReader reads stream to its end and checks that the Reader agrees with
// DecodeBatch applied batch after batch, down to the error text after the
// offset.
func checkReader(t *testing.T, stream []byte) {
	t.Helper()
	r := journal.NewReader(bytes.NewReader(stream))
	var recs []journal.Record
	off := 0
	for {
		got, err := r.Next(recs[:0])
		if off == len(stream) {
			if err != io.EOF {
				t.Fatalf("at the end of the stream: records %d, error %v; want io.EOF", len(got), err)
			}
			return
		}
		want, n, wantErr := journal.DecodeBatch(stream[off:], nil)
		if wantErr != nil {
			if err == nil {
				t.Fatalf("Reader decoded at offset %d what DecodeBatch rejects: %v", off, wantErr)
			}
			if errors.Is(err, io.EOF) || journal.IsCorrupt(err) != journal.IsCorrupt(wantErr) {
				t.Fatalf("at offset %d Reader says %q, DecodeBatch %q", off, err, wantErr)
			}
			if what(err) != what(wantErr) {
				t.Fatalf("at offset %d Reader says %q, DecodeBatch %q", off, err, wantErr)
			}
			if _, again := r.Next(nil); again != err {
				t.Fatalf("after error %v, Next returned %v", err, again)
			}
			return
		}
		if err != nil {
			t.Fatalf("Reader failed at offset %d where DecodeBatch did not: %v", off, err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("Reader and DecodeBatch disagree on the batch at offset %d", off)
		}
		off += n
		recs = got
	}
}

// what is a decode error's text after "journal: batch at offset N: ".
func what(err error) string {
	_, s, _ := strings.Cut(err.Error(), ": ")
	_, s, _ = strings.Cut(s, ": ")
	return s
}

func FuzzSegment(f *testing.F) {
	small := []journal.Record{
		{Seq: 7, Op: journal.OpWrite, Path: "f", Data: []byte("abcdabcd")},
		{Seq: 8, Op: journal.OpRename, Path: "f", Path2: "g"},
		{Seq: 9, Op: journal.OpBarrier},
	}
	for _, compress := range []bool{false, true} {
		whole, first, rest := encode(f, compress, small), encode(f, compress, small[:1]), encode(f, compress, small[1:])
		f.Add(slices.Concat(segHeader(7), whole))
		f.Add(slices.Concat(segHeader(7), first, rest))
		f.Add(slices.Concat(segHeader(7), first, rest)[:16+len(first)+len(rest)-1])
		f.Add(slices.Concat(segHeader(7), first, first))
		f.Add(slices.Concat(segHeader(8), rest, []byte("WCJB")))
	}
	f.Add(segHeader(1))
	f.Add([]byte("WCJS"))
	// One directory for all inputs: a new one each time would make file
	// system calls most of the fuzzer's time.
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, file []byte) {
		checkSegment(t, dir, file)
		// Mutations almost never keep a CRC right; resealing the first
		// batch lets the fuzzer reach the checks behind it.
		if len(file) >= 16+hdrSize {
			c := slices.Clone(file)
			reseal(c[16:])
			checkSegment(t, dir, c)
		}
	})
}

// checkSegment opens a spool in dir whose one segment is file, named after
// the first seq its header claims, and checks that the repair keeps a prefix
// of file made of whole batches with good CRCs and consecutive seqs,
// stopping only before a batch that is not valid, and that the spool holds
// exactly those batches. It leaves dir empty.
func checkSegment(t *testing.T, dir string, file []byte) {
	t.Helper()
	first := uint64(1)
	if len(file) >= 16 && le.Uint64(file[8:]) != 0 {
		first = le.Uint64(file[8:])
	}
	path := filepath.Join(dir, fmt.Sprintf("%020d.wcs", first))
	if err := os.WriteFile(path, file, 0o600); err != nil {
		t.Fatal(err)
	}
	defer os.Remove(path)
	s, err := journal.OpenSpool(journal.SpoolOptions{Dir: dir, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatalf("OpenSpool: %v", err)
	}
	defer s.Close()
	kept, err := os.ReadFile(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		if len(file) >= 16 && bytes.Equal(file[:16], segHeader(first)) {
			t.Fatal("removed a segment whose header is good")
		}
		if s.Last() != 0 || s.First() != 0 {
			t.Fatalf("segment removed, yet First %d, Last %d", s.First(), s.Last())
		}
		return
	case err != nil:
		t.Fatal(err)
	case !bytes.HasPrefix(file, kept) || len(kept) < 16 || !bytes.Equal(kept[:16], segHeader(first)):
		t.Fatalf("kept %d bytes that are not a prefix of the %d given, starting with a good header", len(kept), len(file))
	}

	// The kept batches, read by a cursor, tile the file after the header.
	var recs []journal.Record
	off, next := 16, first
	c := s.Cursor(first)
	defer c.Close()
	done, cancel := context.WithCancel(context.Background())
	cancel() // Next must not wait for what the spool holds
	for off < len(kept) {
		b, bf, bl, err := c.Next(done)
		if err != nil {
			t.Fatalf("Next at offset %d: %v", off, err)
		}
		if !bytes.Equal(b, kept[off:off+len(b)]) || bf != next {
			t.Fatalf("batch at offset %d: seq %d (want %d), or bytes differ from the file", off, bf, next)
		}
		sum := crc32.Update(crc32.Update(0, crc32.MakeTable(crc32.Castagnoli), b[:offCRC]), crc32.MakeTable(crc32.Castagnoli), b[hdrSize:])
		if sum != le.Uint32(b[offCRC:]) || len(b) != hdrSize+int(le.Uint32(b[offPayloadLen:])) {
			t.Fatalf("kept a batch at offset %d with a bad CRC or length", off)
		}
		off += len(b)
		next = bl + 1
	}
	if s.Last() != next-1 {
		t.Fatalf("Last %d, want %d", s.Last(), next-1)
	}
	// What was cut off does not start with a batch that decodes and follows.
	if rest := file[len(kept):]; len(rest) > 0 {
		if recs, _, err := journal.DecodeBatch(rest, recs); err == nil && recs[0].Seq == next {
			t.Fatalf("cut off a valid batch at offset %d", len(kept))
		}
	}
}

func FuzzDecodeChanges(f *testing.F) {
	full := journal.NewChanges(1)
	full.Mark("a", journal.ChangedEntry)
	full.Mark("b", journal.ChangedEntry)
	every := changesOf(rng("d/f", 0, 10), rng("d/f", 20, 5), rng("d/f", 100, -1),
		journal.Record{Op: journal.OpRename, Path: "a", Path2: "b"},
		journal.Record{Op: journal.OpFallocate, Path: "c", Offset: 1 << 33, Length: 4096})
	every.Mark("d", journal.ChangedNames|journal.ChangedAttrs)
	for _, c := range []*journal.Changes{journal.NewChanges(0), full, every, changesOf(rng("f", 0, -1))} {
		b, err := c.Encode()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := journal.DecodeChanges(b, 0)
		if err != nil {
			if !errors.Is(err, journal.ErrCorrupt) || c != nil {
				t.Fatalf("error %q (wraps ErrCorrupt: %v) with record %v", err, errors.Is(err, journal.ErrCorrupt), c != nil)
			}
			return
		}
		checkChanges(t, c)
		again, err := c.Encode()
		if err != nil {
			t.Fatalf("re-encoding decoded changes: %v", err)
		}
		back, err := journal.DecodeChanges(again, 0)
		if err != nil {
			t.Fatalf("decoding re-encoded changes: %v", err)
		}
		if back.Full() != c.Full() || !reflect.DeepEqual(wholeAsNil(visit(back)), wholeAsNil(visit(c))) {
			t.Fatalf("changes differ through re-encoding:\n got %+v (full %v)\nwant %+v (full %v)", visit(back), back.Full(), visit(c), c.Full())
		}
		if one, err := journal.DecodeChanges(b, 1); err != nil || one.Len() > 1 || (c.Len() > 1 && !one.Full()) {
			t.Fatalf("with a limit of one path: %d paths, full %v, %v; without: %d paths", lenOf(one), one != nil && one.Full(), err, c.Len())
		}
	})
}

func lenOf(c *journal.Changes) int {
	if c == nil {
		return -1
	}
	return c.Len()
}

// checkChanges fails unless every path of c changed in a known way and its
// ranges are sorted, disjoint, not touching, valid and at most 64.
func checkChanges(t *testing.T, c *journal.Changes) {
	t.Helper()
	const known = journal.ChangedContent | journal.ChangedAttrs | journal.ChangedEntry | journal.ChangedGone | journal.ChangedNames
	if c.Full() && c.Len() != 0 {
		t.Fatalf("full with %d paths", c.Len())
	}
	c.Each(func(p string, pc journal.PathChange) {
		if pc.What == 0 || pc.What&^known != 0 {
			t.Fatalf("path %q: change %#x", p, pc.What)
		}
		if pc.Ranges == nil {
			return
		}
		if pc.What&journal.ChangedContent == 0 || len(pc.Ranges) == 0 || len(pc.Ranges) > 64 {
			t.Fatalf("path %q: change %#x with %d ranges", p, pc.What, len(pc.Ranges))
		}
		for i, r := range pc.Ranges {
			if r.Off < 0 || r.Len < -1 || (r.Len == -1 && i != len(pc.Ranges)-1) {
				t.Fatalf("path %q: ranges %+v", p, pc.Ranges)
			}
			if i > 0 {
				prev := pc.Ranges[i-1]
				if prev.Off+prev.Len >= r.Off || prev.Off+prev.Len < prev.Off {
					t.Fatalf("path %q: ranges %+v overlap, touch or are out of order", p, pc.Ranges)
				}
			}
		}
	})
}

// wholeAsNil writes the one range {0, to the end} as nil: both mean the
// whole file.
func wholeAsNil(pcs []pathChange) []pathChange {
	for i, x := range pcs {
		if len(x.PC.Ranges) == 1 && x.PC.Ranges[0] == (journal.Range{Off: 0, Len: -1}) {
			pcs[i].PC.Ranges = nil
		}
	}
	return pcs
}
