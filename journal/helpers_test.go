package journal_test

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"math"
	"reflect"
	"runtime"
	"testing"

	"github.com/vmihailenco/msgpack/v5"
	"github.com/writecap/writecap/journal"
)

// Header field offsets, restated rather than shared with the package so that
// the tests pin the wire format.
const (
	offVersion    = 4
	offFlags      = 5
	offReserved   = 6
	offFirstSeq   = 8
	offCount      = 16
	offRawLen     = 20
	offPayloadLen = 24
	offCRC        = 28
	hdrSize       = 32
)

var le = binary.LittleEndian

// fullRecord returns a record of op with every field set, whether op uses it
// or not, with values that need multi-byte msgpack forms.
func fullRecord(seq uint64, op journal.Op) journal.Record {
	return journal.Record{
		Seq:    seq,
		Op:     op,
		Path:   fmt.Sprintf("data/base/16384/%s-%d", op, op),
		Path2:  "naïve/target/" + op.String(),
		Offset: 1<<40 + int64(op),
		Length: -1 << 33,
		Mode:   0o100644,
		Flags:  journal.SetMode | journal.SetOwner | journal.SetAtime | journal.SetMtime,
		UID:    math.MaxUint32,
		GID:    1000 + uint32(op),
		Atime:  1_700_000_000_123_456_789,
		Mtime:  -1_700_000_000_987_654_321,
		Data:   bytes.Repeat([]byte(op.String()+" payload "), 8),
	}
}

// allOps returns one fullRecord per known op, with seqs from first.
func allOps(first uint64) []journal.Record {
	var recs []journal.Record
	for op := journal.OpWrite; op.Valid(); op++ {
		recs = append(recs, fullRecord(first+uint64(len(recs)), op))
	}
	return recs
}

// writes returns n 4 KiB writes to one file, with text-like content that lz4
// compresses about as well as database pages.
func writes(first uint64, n int) []journal.Record {
	words := []string{"alpha ", "beta ", "gamma ", "delta ", "0042 ", "\x00\x00\x00\x00", "row ", "xmin "}
	recs := make([]journal.Record, n)
	x := uint32(1)
	for i := range recs {
		var data []byte
		for len(data) < 4096 {
			x = x*1664525 + 1013904223
			data = append(data, words[x>>29]...)
		}
		recs[i] = journal.Record{
			Seq: first + uint64(i), Op: journal.OpWrite, Path: "data/base/16384/2619",
			Offset: int64(i) * 4096, Data: data[:4096],
		}
	}
	return recs
}

func encode(t testing.TB, compress bool, recs []journal.Record) []byte {
	t.Helper()
	b, err := journal.NewEncoder(journal.EncoderOptions{Compress: compress}).AppendBatch(nil, recs)
	if err != nil {
		t.Fatalf("AppendBatch: %v", err)
	}
	return b
}

// decodeAll decodes b, which must hold exactly one valid batch.
func decodeAll(t testing.TB, b []byte) []journal.Record {
	t.Helper()
	recs, n, err := journal.DecodeBatch(b, nil)
	if err != nil {
		t.Fatalf("DecodeBatch: %v", err)
	}
	if n != len(b) {
		t.Fatalf("DecodeBatch consumed %d of %d bytes", n, len(b))
	}
	return recs
}

func equalRecords(t testing.TB, got, want []journal.Record) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("got %d records, want %d", len(got), len(want))
	}
	for i := range want {
		if !reflect.DeepEqual(got[i], want[i]) {
			t.Fatalf("record %d:\n got %#v\nwant %#v", i, got[i], want[i])
		}
	}
}

// reseal recomputes b's CRC, so that a test can reach the checks behind it.
func reseal(b []byte) []byte {
	payload := b[hdrSize:]
	if n := int(le.Uint32(b[offPayloadLen:])); n < len(payload) {
		payload = payload[:n]
	}
	tab := crc32.MakeTable(crc32.Castagnoli)
	sum := crc32.Update(crc32.Update(0, tab, b[:offCRC]), tab, payload)
	le.PutUint32(b[offCRC:], sum)
	return b
}

// batch is a header to forge; zero rawLen means the payload's length.
type batch struct {
	flags  byte
	first  uint64
	count  uint32
	rawLen uint32
}

// forge builds a sealed batch around payload, whatever its contents.
func forge(h batch, payload []byte) []byte {
	b := make([]byte, hdrSize, hdrSize+len(payload))
	copy(b, "WCJB")
	b[offVersion] = 1
	b[offFlags] = h.flags
	le.PutUint64(b[offFirstSeq:], h.first)
	le.PutUint32(b[offCount:], h.count)
	if h.rawLen == 0 {
		h.rawLen = uint32(len(payload))
	}
	le.PutUint32(b[offRawLen:], h.rawLen)
	le.PutUint32(b[offPayloadLen:], uint32(len(payload)))
	return reseal(append(b, payload...))
}

// rawRecord encodes fields as one msgpack array, valid as a record or not.
func rawRecord(t testing.TB, fields ...any) []byte {
	t.Helper()
	var buf bytes.Buffer
	enc := msgpack.NewEncoder(&buf)
	if err := enc.EncodeArrayLen(len(fields)); err != nil {
		t.Fatal(err)
	}
	for _, f := range fields {
		if err := enc.Encode(f); err != nil {
			t.Fatal(err)
		}
	}
	return buf.Bytes()
}

// goodFields are a valid record's fields for rawRecord.
func goodFields(seq uint64) []any {
	return []any{seq, uint8(journal.OpWrite), "f", "", 0, 0, 0, 0, 0, 0, 0, 0, []byte("x")}
}

// with returns fields with element i replaced by v.
func with(fields []any, i int, v any) []any {
	fields = append([]any(nil), fields...)
	fields[i] = v
	return fields
}

// allocated reports how many bytes f allocates.
func allocated(f func()) uint64 {
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

// wantKind fails unless err wraps the sentinel kind names ("corrupt" or "truncated").
func wantKind(t testing.TB, err error, kind string) {
	t.Helper()
	switch {
	case err == nil:
		t.Fatalf("no error, want %s", kind)
	case kind == "corrupt" && !journal.IsCorrupt(err), kind == "truncated" && !journal.IsTruncated(err):
		t.Fatalf("error %q is not %s", err, kind)
	case journal.IsCorrupt(err) && journal.IsTruncated(err):
		t.Fatalf("error %q is both corrupt and truncated", err)
	}
}
