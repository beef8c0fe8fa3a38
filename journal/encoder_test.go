package journal_test

import (
	"bytes"
	"errors"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/writecap/writecap/journal"
)

func TestRoundTrip(t *testing.T) {
	random := make([]byte, 100_000)
	rng := rand.NewChaCha8([32]byte{1})
	_, _ = rng.Read(random)

	tests := []struct {
		name string
		recs []journal.Record
	}{
		{name: "every op, every field", recs: allOps(1)},
		{name: "zero fields", recs: []journal.Record{{Seq: 0, Op: journal.OpBarrier}}},
		{name: "empty data is not nil", recs: []journal.Record{{Seq: 7, Op: journal.OpWrite, Path: "f", Data: []byte{}}}},
		{name: "extremes", recs: []journal.Record{{
			Seq: math.MaxUint64, Op: journal.OpSetattr, Path: "a", Path2: "b",
			Offset: math.MinInt64, Length: math.MaxInt64, Mode: math.MaxUint32, Flags: math.MaxUint32,
			UID: math.MaxUint32, GID: math.MaxUint32, Atime: math.MinInt64, Mtime: math.MaxInt64,
		}}},
		{name: "long path", recs: []journal.Record{{Seq: 1 << 40, Op: journal.OpCreate, Path: strings.Repeat("d/", 40_000)}}},
		{name: "large compressible write", recs: []journal.Record{{Seq: 3, Op: journal.OpWrite, Path: "f", Data: bytes.Repeat([]byte("row "), 300_000)}}},
		{name: "zeros at lz4's best ratio", recs: []journal.Record{{Seq: 3, Op: journal.OpWrite, Path: "f", Data: make([]byte, 8<<20)}}},
		{name: "incompressible write", recs: []journal.Record{{Seq: 3, Op: journal.OpWrite, Path: "f", Data: random}}},
		{name: "many records", recs: writes(1000, 300)},
	}
	for _, tt := range tests {
		for _, compress := range []bool{false, true} {
			name := tt.name + "/raw"
			if compress {
				name = tt.name + "/lz4"
			}
			t.Run(name, func(t *testing.T) {
				b := encode(t, compress, tt.recs)
				equalRecords(t, decodeAll(t, b), tt.recs)
			})
		}
	}
}

func TestCompressionFlag(t *testing.T) {
	random := make([]byte, 4096)
	_, _ = rand.NewChaCha8([32]byte{2}).Read(random)
	tests := []struct {
		name     string
		compress bool
		data     []byte
		wantLZ4  bool
	}{
		{name: "compressible", compress: true, data: bytes.Repeat([]byte("abcd"), 1024), wantLZ4: true},
		{name: "incompressible is stored raw", compress: true, data: random, wantLZ4: false},
		{name: "compression off", compress: false, data: bytes.Repeat([]byte("abcd"), 1024), wantLZ4: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			recs := []journal.Record{{Seq: 1, Op: journal.OpWrite, Path: "f", Data: tt.data}}
			b := encode(t, tt.compress, recs)
			if got := b[offFlags] == 1; got != tt.wantLZ4 {
				t.Fatalf("flags %#x, want lz4 %v", b[offFlags], tt.wantLZ4)
			}
			if tt.wantLZ4 && len(b) >= len(tt.data) {
				t.Fatalf("compressed batch is %d bytes for %d bytes of data", len(b), len(tt.data))
			}
			equalRecords(t, decodeAll(t, b), recs)
		})
	}
}

func TestAppendBatchAppends(t *testing.T) {
	enc := journal.NewEncoder(journal.EncoderOptions{Compress: true})
	first, second := allOps(10), writes(24, 3)
	b := []byte("prefix")
	b, err := enc.AppendBatch(b, first)
	if err != nil {
		t.Fatal(err)
	}
	b, err = enc.AppendBatch(b, second)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(b, []byte("prefix")) {
		t.Fatalf("prefix overwritten: %q", b[:6])
	}
	got, n, err := journal.DecodeBatch(b[6:], nil)
	if err != nil {
		t.Fatal(err)
	}
	got, m, err := journal.DecodeBatch(b[6+n:], got)
	if err != nil {
		t.Fatal(err)
	}
	if 6+n+m != len(b) {
		t.Fatalf("batches take %d+%d bytes of %d", n, m, len(b)-6)
	}
	equalRecords(t, got, append(first, second...))
}

func TestEncoderRejects(t *testing.T) {
	barrier := func(seq uint64) journal.Record { return journal.Record{Seq: seq, Op: journal.OpBarrier} }
	tests := []struct {
		name string
		recs []journal.Record
		want error
		msg  string
	}{
		{name: "no records", recs: nil, want: journal.ErrInvalid, msg: "no records"},
		{name: "op zero", recs: []journal.Record{{Seq: 1}}, want: journal.ErrInvalid, msg: "record 0 (seq 1): unknown op(0)"},
		{name: "unknown op", recs: []journal.Record{barrier(1), {Seq: 2, Op: journal.OpPrune + 1}}, want: journal.ErrInvalid, msg: "record 1 (seq 2): unknown op(16)"},
		{name: "seq gap", recs: []journal.Record{barrier(1), barrier(3)}, want: journal.ErrInvalid, msg: "record 1: seq 3 does not follow seq 1"},
		{name: "seq repeated", recs: []journal.Record{barrier(1), barrier(1)}, want: journal.ErrInvalid, msg: "seq 1 does not follow seq 1"},
		{name: "seq wraps", recs: []journal.Record{barrier(math.MaxUint64), barrier(0)}, want: journal.ErrInvalid, msg: "seq 0 does not follow"},
		{name: "too many records", recs: make([]journal.Record, journal.MaxRecords+1), want: journal.ErrTooLarge, msg: "1048577 records exceed 1048576"},
		{name: "data too large", recs: []journal.Record{{Seq: 1, Op: journal.OpWrite, Data: make([]byte, journal.MaxPayload)}}, want: journal.ErrTooLarge, msg: "records up to 0 (seq 1) need more than 67108864 bytes"},
		{name: "payload too large once encoded", recs: wideRecords(), want: journal.ErrTooLarge, msg: "payload exceeds 67108864 bytes at record"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dst := []byte("keep")
			got, err := journal.NewEncoder(journal.EncoderOptions{Compress: true}).AppendBatch(dst, tt.recs)
			if !errors.Is(err, tt.want) || !strings.Contains(err.Error(), tt.msg) {
				t.Fatalf("error %v, want %v containing %q", err, tt.want, tt.msg)
			}
			if string(got) != "keep" {
				t.Fatalf("dst changed to %q", got)
			}
		})
	}
}

// wideRecords fill MaxPayload counting one byte per field, and exceed it
// once their large numbers take their full msgpack size.
func wideRecords() []journal.Record {
	const n = 64
	data := make([]byte, journal.MaxPayload/n-14)
	recs := make([]journal.Record, n)
	for i := range recs {
		recs[i] = journal.Record{
			Seq: 1<<40 + uint64(i), Op: journal.OpWrite, Data: data,
			Offset: math.MaxInt64, Length: math.MaxInt64, Atime: math.MaxInt64, Mtime: math.MaxInt64,
			Mode: math.MaxUint32, Flags: math.MaxUint32, UID: math.MaxUint32, GID: math.MaxUint32,
		}
	}
	return recs
}

func TestEncoderSteadyStateAllocs(t *testing.T) {
	for _, compress := range []bool{false, true} {
		enc := journal.NewEncoder(journal.EncoderOptions{Compress: compress})
		recs := append(allOps(1), writes(16, 50)...)
		var buf []byte
		allocs := testing.AllocsPerRun(20, func() {
			var err error
			if buf, err = enc.AppendBatch(buf[:0], recs); err != nil {
				t.Fatal(err)
			}
		})
		if allocs != 0 {
			t.Errorf("compress=%v: %v allocations per batch, want 0", compress, allocs)
		}
	}
}

// TestEncoderSkipsIncompressible: after a large batch lz4 cannot shrink, the
// next few are stored as they are without trying; then it tries again.
func TestEncoderSkipsIncompressible(t *testing.T) {
	noise := make([]byte, 256<<10)
	rand.NewChaCha8([32]byte{7}).Read(noise)
	text := bytes.Repeat([]byte("compressible text "), 16<<10)
	enc := journal.NewEncoder(journal.EncoderOptions{Compress: true})
	compressed := func(seq uint64, data []byte) bool {
		t.Helper()
		b, err := enc.AppendBatch(nil, []journal.Record{{Seq: seq, Op: journal.OpWrite, Path: "f", Data: data}})
		if err != nil {
			t.Fatal(err)
		}
		return b[5]&1 != 0 // the flags byte: lz4
	}
	if compressed(1, noise) {
		t.Fatal("noise compressed")
	}
	var got []bool
	for i := range 10 {
		got = append(got, compressed(uint64(2+i), text))
	}
	want := []bool{false, false, false, false, false, false, false, false, true, true}
	if !slices.Equal(got, want) {
		t.Errorf("compressible batches after an incompressible one: compressed %v, want %v", got, want)
	}
}
