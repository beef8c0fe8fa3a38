package journal_test

import (
	"bytes"
	"fmt"
	"math"
	"slices"
	"strings"
	"testing"

	"github.com/writecap/writecap/journal"
)

func TestDecodeRejects(t *testing.T) {
	good := func(t *testing.T) []byte { t.Helper(); return encode(t, false, allOps(100)) }
	goodLZ4 := func(t *testing.T) []byte {
		t.Helper()
		b := encode(t, true, allOps(100))
		if b[offFlags] != 1 {
			t.Fatal("allOps did not compress")
		}
		return b
	}
	// edit returns a case builder that changes a good batch, then reseals it
	// so the change reaches the checks behind the CRC.
	edit := func(base func(*testing.T) []byte, f func(b []byte)) func(*testing.T) []byte {
		return func(t *testing.T) []byte { b := base(t); f(b); return reseal(b) }
	}
	records := func(h batch, recs ...[]byte) func(*testing.T) []byte {
		return func(*testing.T) []byte { return forge(h, slices.Concat(recs...)) }
	}
	lz4Garbage := func(*testing.T) []byte {
		return forge(batch{flags: 1, first: 1, count: 1, rawLen: 200}, bytes.Repeat([]byte{0xf0}, 40))
	}
	one := batch{first: 5, count: 1}
	// A record's fields up to data, then a bin32 header claiming 4 GiB.
	hugeData := append(rawRecord(t, goodFields(5)[:12]...), 0xc6, 0xff, 0xff, 0xff, 0xff)
	hugeData[0]++ // the array holds 13 elements, the last one the bin32
	hugePath := append(rawRecord(t, uint64(5), 1), 0xdb, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
	hugePath[0] = 0x9d

	tests := []struct {
		name  string
		batch func(*testing.T) []byte
		kind  string
		msg   string
	}{
		{name: "empty input", batch: func(*testing.T) []byte { return nil }, kind: "truncated", msg: "header has 0 of 32 bytes"},
		{name: "short header", batch: func(t *testing.T) []byte { return good(t)[:10] }, kind: "truncated", msg: "header has 10 of 32 bytes"},
		{name: "short garbage", batch: func(*testing.T) []byte { return []byte("WX") }, kind: "corrupt", msg: `bad magic "WX" at byte 0`},
		{name: "short payload", batch: func(t *testing.T) []byte { b := good(t); return b[:len(b)-1] }, kind: "truncated", msg: "payload has"},
		{name: "wrong magic", batch: edit(good, func(b []byte) { b[3] = 'X' }), kind: "corrupt", msg: `bad magic "WCJX" at byte 0, want "WCJB"`},
		{name: "unknown version", batch: edit(good, func(b []byte) { b[offVersion] = 2 }), kind: "corrupt", msg: "unknown version 2 at byte 4"},
		{name: "unknown flag", batch: edit(good, func(b []byte) { b[offFlags] = 0x80 }), kind: "corrupt", msg: "unknown flags 0x80 at byte 5"},
		{name: "nonzero reserved", batch: edit(good, func(b []byte) { b[offReserved+1] = 1 }), kind: "corrupt", msg: "reserved field 0x0100 at byte 6, want 0"},
		{name: "flipped payload byte", batch: func(t *testing.T) []byte { b := good(t); b[hdrSize+40] ^= 4; return b }, kind: "corrupt", msg: "crc mismatch (stored 0x"},
		{name: "flipped lz4 payload byte", batch: func(t *testing.T) []byte { b := goodLZ4(t); b[hdrSize+40] ^= 4; return b }, kind: "corrupt", msg: "crc mismatch (stored 0x"},
		{name: "flipped seq in header", batch: func(t *testing.T) []byte { b := good(t); b[offFirstSeq] ^= 1; return b }, kind: "corrupt", msg: "crc mismatch"},
		{name: "flipped crc", batch: func(t *testing.T) []byte { b := good(t); b[offCRC+3] ^= 0x80; return b }, kind: "corrupt", msg: "crc mismatch"},
		{name: "payload length above max", batch: edit(good, func(b []byte) { le.PutUint32(b[offPayloadLen:], journal.MaxPayload+1) }), kind: "corrupt", msg: "payload length 67108865 at byte 24 exceeds 67108864"},
		{name: "uncompressed length above max", batch: edit(goodLZ4, func(b []byte) { le.PutUint32(b[offRawLen:], math.MaxUint32) }), kind: "corrupt", msg: "uncompressed length 4294967295 at byte 20 exceeds"},
		{name: "uncompressed length differs without lz4", batch: edit(good, func(b []byte) { le.PutUint32(b[offRawLen:], le.Uint32(b[offRawLen:])-1) }), kind: "corrupt", msg: "differs from payload length"},
		{name: "uncompressed length beyond lz4 expansion", batch: edit(goodLZ4, func(b []byte) { le.PutUint32(b[offRawLen:], 255*le.Uint32(b[offPayloadLen:])+1) }), kind: "corrupt", msg: "more than lz4 can expand"},
		{name: "uncompressed length too long for lz4 block", batch: edit(goodLZ4, func(b []byte) { le.PutUint32(b[offRawLen:], le.Uint32(b[offRawLen:])+1) }), kind: "corrupt", msg: "lz4 payload at byte 32 holds"},
		{name: "uncompressed length too short for lz4 block", batch: edit(goodLZ4, func(b []byte) { le.PutUint32(b[offRawLen:], le.Uint32(b[offRawLen:])-1) }), kind: "corrupt", msg: "lz4 payload at byte 32: "},
		{name: "lz4 garbage", batch: lz4Garbage, kind: "corrupt", msg: "lz4 payload at byte 32"},
		{name: "zero count", batch: edit(good, func(b []byte) { le.PutUint32(b[offCount:], 0) }), kind: "corrupt", msg: "record count 0 at byte 16"},
		{name: "count above max", batch: edit(good, func(b []byte) { le.PutUint32(b[offCount:], journal.MaxRecords+1) }), kind: "corrupt", msg: "record count 1048577 at byte 16 exceeds 1048576"},
		{name: "count cannot fit", batch: edit(good, func(b []byte) { le.PutUint32(b[offCount:], 1000) }), kind: "corrupt", msg: "record count 1000 at byte 16 cannot fit"},
		{name: "one record more than held", batch: edit(good, func(b []byte) { le.PutUint32(b[offCount:], 16) }), kind: "corrupt", msg: "record 15 (seq 115): record at payload byte"},
		{name: "one record fewer than held", batch: edit(good, func(b []byte) { le.PutUint32(b[offCount:], 13) }), kind: "corrupt", msg: "after the last record"},
		{name: "seq overflows", batch: records(batch{first: math.MaxUint64, count: 2}, rawRecord(t, goodFields(math.MaxUint64)...), rawRecord(t, goodFields(0)...)), kind: "corrupt", msg: "first seq 18446744073709551615 at byte 8 overflows with 2 records"},
		{name: "seq gap", batch: records(batch{first: 5, count: 2}, rawRecord(t, goodFields(5)...), rawRecord(t, goodFields(7)...)), kind: "corrupt", msg: "record 1 (seq 6): seq 7 at payload byte 27, want 6"},
		{name: "seq repeated", batch: records(batch{first: 5, count: 2}, rawRecord(t, goodFields(5)...), rawRecord(t, goodFields(5)...)), kind: "corrupt", msg: "seq 5 at payload byte 27, want 6"},
		{name: "seq differs from header", batch: records(one, rawRecord(t, goodFields(4)...)), kind: "corrupt", msg: "record 0 (seq 5): seq 4 at payload byte 1, want 5"},
		{name: "unknown op", batch: records(one, rawRecord(t, with(goodFields(5), 1, 99)...)), kind: "corrupt", msg: "unknown op 99 at payload byte 10"},
		{name: "op zero", batch: records(one, rawRecord(t, with(goodFields(5), 1, 0)...)), kind: "corrupt", msg: "unknown op 0"},
		{name: "op beyond a byte", batch: records(one, rawRecord(t, with(goodFields(5), 1, 0x101)...)), kind: "corrupt", msg: "op 257 at payload byte 10 exceeds 255"},
		{name: "12 fields", batch: records(one, rawRecord(t, goodFields(5)[:12]...), []byte{0xc0}), kind: "corrupt", msg: "12 fields at payload byte 0, want 13"},
		{name: "14 fields", batch: records(one, rawRecord(t, append(goodFields(5), 0)...)), kind: "corrupt", msg: "14 fields at payload byte 0, want 13"},
		{name: "not an array", batch: records(one, bytes.Repeat([]byte{0xa1, 'x'}, 10)), kind: "corrupt", msg: "record at payload byte 0: msgpack: invalid code=a1"},
		{name: "mode beyond uint32", batch: records(one, rawRecord(t, with(goodFields(5), 6, uint64(1)<<32)...)), kind: "corrupt", msg: "mode 4294967296 at payload byte"},
		{name: "negative uid", batch: records(one, rawRecord(t, with(goodFields(5), 8, -1)...)), kind: "corrupt", msg: "uid 18446744073709551615 at payload byte"},
		{name: "string for an int", batch: records(one, rawRecord(t, with(goodFields(5), 4, "x")...)), kind: "corrupt", msg: "offset at payload byte"},
		{name: "int for a string", batch: records(one, rawRecord(t, with(goodFields(5), 2, 7)...)), kind: "corrupt", msg: "path at payload byte"},
		{name: "data beyond payload", batch: records(one, hugeData), kind: "corrupt", msg: "data at payload byte"},
		{name: "path beyond payload", batch: records(one, hugePath), kind: "corrupt", msg: "path at payload byte 11: length 4294967295 exceeds the 11 bytes left"},
		{name: "trailing bytes", batch: records(one, rawRecord(t, goodFields(5)...), []byte{0xc0, 0xc0}), kind: "corrupt", msg: "2 bytes at payload byte 26 after the last record"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			prior := []journal.Record{{Seq: 1, Op: journal.OpBarrier}}
			recs, n, err := journal.DecodeBatch(tt.batch(t), prior)
			wantKind(t, err, tt.kind)
			if !strings.HasPrefix(err.Error(), "journal: batch at offset 0: ") || !strings.Contains(err.Error(), tt.msg) {
				t.Fatalf("error %q, want it to contain %q", err, tt.msg)
			}
			if n != 0 || len(recs) != 1 || recs[0].Seq != 1 {
				t.Fatalf("on error got n=%d and %d records, want 0 and recs as given", n, len(recs))
			}
		})
	}
}

func TestDecodeErrorText(t *testing.T) {
	b := encode(t, false, allOps(1))
	stored := le.Uint32(b[offCRC:])
	b[offCRC] ^= 0xff
	_, _, err := journal.DecodeBatch(b, nil)
	want := fmt.Sprintf("journal: batch at offset 0: crc mismatch (stored %#08x, computed %#08x): journal: corrupt record",
		stored^0xff, stored)
	if err == nil || err.Error() != want {
		t.Errorf("error %q\nwant %q", err, want)
	}

	b = forge(batch{first: 5, count: 2}, slices.Concat(rawRecord(t, goodFields(5)...), rawRecord(t, goodFields(7)...)))
	_, _, err = journal.DecodeBatch(b, nil)
	want = "journal: batch at offset 0: record 1 (seq 6): seq 7 at payload byte 27, want 6: seqs must be consecutive: journal: corrupt record"
	if err == nil || err.Error() != want {
		t.Errorf("error %q\nwant %q", err, want)
	}
}

func TestDecodeTruncatedEverywhere(t *testing.T) {
	for _, compress := range []bool{false, true} {
		b := encode(t, compress, allOps(1)[:3])
		for i := range len(b) {
			recs, n, err := journal.DecodeBatch(b[:i], nil)
			if !journal.IsTruncated(err) || n != 0 || len(recs) != 0 {
				t.Fatalf("compress=%v, %d of %d bytes: n=%d, %d records, error %v; want ErrTruncated",
					compress, i, len(b), n, len(recs), err)
			}
		}
	}
}

func TestDecodeFlippedEverywhere(t *testing.T) {
	for _, compress := range []bool{false, true} {
		b := encode(t, compress, allOps(1)[:3])
		for i := range len(b) {
			for bit := range 8 {
				c := slices.Clone(b)
				c[i] ^= 1 << bit
				_, _, err := journal.DecodeBatch(c, nil)
				if !journal.IsCorrupt(err) && !journal.IsTruncated(err) {
					t.Fatalf("compress=%v, byte %d bit %d flipped: error %v", compress, i, bit, err)
				}
			}
		}
	}
}

// TestDecodeHostileLengths checks that lengths and counts claiming far more
// than the input holds fail without allocating for the claim. The batches
// are resealed: the CRC alone must not be what stops them.
func TestDecodeHostileLengths(t *testing.T) {
	small := encode(t, false, allOps(1)[:1])
	// set returns small with header fields changed, resealed.
	set := func(fields map[int]uint32) []byte {
		b := slices.Clone(small)
		for off, v := range fields {
			le.PutUint32(b[off:], v)
		}
		return reseal(b)
	}
	// bin32 is a record whose data claims 4 GiB.
	bin32 := append(rawRecord(t, goodFields(5)[:12]...), 0xc6, 0xff, 0xff, 0xff, 0xff)
	bin32[0]++ // count the bin32 as the 13th element
	tests := []struct {
		name  string
		batch []byte
	}{
		{name: "count", batch: set(map[int]uint32{offCount: math.MaxUint32})},
		{name: "payload length", batch: set(map[int]uint32{offPayloadLen: math.MaxUint32})},
		{name: "payload length at max", batch: set(map[int]uint32{offPayloadLen: journal.MaxPayload, offRawLen: journal.MaxPayload})},
		{name: "uncompressed length", batch: set(map[int]uint32{offRawLen: math.MaxUint32})},
		{name: "uncompressed length at max", batch: forge(batch{flags: 1, first: 1, count: 1, rawLen: journal.MaxPayload}, []byte{0xff, 0xff})},
		{name: "lz4 at its largest expansion", batch: forge(batch{flags: 1, first: 1, count: 1, rawLen: 255 * 64}, bytes.Repeat([]byte{0xff}, 64))},
		{name: "data length", batch: forge(batch{first: 5, count: 1}, append(bin32, make([]byte, 8)...))},
		{name: "array length", batch: forge(batch{first: 5, count: 1}, append([]byte{0xdd, 0xff, 0xff, 0xff, 0xff}, make([]byte, 20)...))},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var err error
			n := allocated(func() { _, _, err = journal.DecodeBatch(tt.batch, nil) })
			if err == nil {
				t.Fatal("no error")
			}
			if n > 64<<10 {
				t.Fatalf("allocated %d bytes for a %d-byte input (error %v)", n, len(tt.batch), err)
			}
			t.Logf("allocated %d bytes: %v", n, err)
		})
	}
}

func TestDecodeConsumesOneBatch(t *testing.T) {
	first, second := encode(t, true, allOps(1)), encode(t, false, allOps(16))
	b := append(slices.Clone(first), second...)
	recs, n, err := journal.DecodeBatch(b, nil)
	if err != nil || n != len(first) {
		t.Fatalf("n=%d, error %v; want %d", n, err, len(first))
	}
	equalRecords(t, recs, allOps(1))
}

func TestDecodedDataOwnership(t *testing.T) {
	want := allOps(1)
	for _, compress := range []bool{false, true} {
		b := encode(t, compress, want)
		recs := decodeAll(t, b)
		clear(b) // DecodeBatch's records must not alias its input
		equalRecords(t, recs, want)
		// Appending to one record's Data must not overwrite the next record.
		_ = append(recs[0].Data, "overwrite"...)
		equalRecords(t, recs, want)
	}
}

// TestDecoderAlias: with Alias, an uncompressed batch's records point into
// the caller's bytes, and a compressed batch decoded after it does not
// write over them; without it, nothing points into them.
func TestDecoderAlias(t *testing.T) {
	tests := []struct {
		name      string
		alias     bool
		compress  bool
		wantAlias bool
	}{
		{name: "uncompressed, alias", alias: true, wantAlias: true},
		{name: "compressed, alias", alias: true, compress: true},
		{name: "uncompressed", alias: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := journal.Decoder{Alias: tt.alias}
			want := writes(1, 4)
			b := encode(t, tt.compress, want)
			orig := slices.Clone(b)
			recs, _, err := d.Decode(b, nil)
			if err != nil {
				t.Fatal(err)
			}
			equalRecords(t, recs, want)
			if _, _, err := d.Decode(encode(t, true, writes(5, 4)), nil); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(b, orig) {
				t.Fatal("decoding a later batch changed the bytes of an earlier one")
			}
			recs[0].Data[0] ^= 0xff
			if aliased := !bytes.Equal(b, orig); aliased != tt.wantAlias {
				t.Errorf("records point into the batch's bytes: %v, want %v", aliased, tt.wantAlias)
			}
		})
	}
}

// TestDecodeChecked: DecodeChecked leaves the CRC to its caller and checks
// everything else.
func TestDecodeChecked(t *testing.T) {
	want := allOps(1)
	b := encode(t, false, want)
	b[offCRC] ^= 0xff
	var d journal.Decoder
	if _, _, err := d.Decode(b, nil); !journal.IsCorrupt(err) {
		t.Fatalf("Decode of a batch with a bad CRC: %v, want corrupt", err)
	}
	recs, n, err := d.DecodeChecked(b, nil)
	if err != nil || n != len(b) {
		t.Fatalf("DecodeChecked of a batch its caller checked: n=%d %v", n, err)
	}
	equalRecords(t, recs, want)
	if _, _, err := d.DecodeChecked(b[:len(b)-1], nil); !journal.IsTruncated(err) {
		t.Errorf("DecodeChecked of a cut batch: %v, want truncated", err)
	}
}

func TestDecoderReuse(t *testing.T) {
	var d journal.Decoder
	batches := [][]journal.Record{allOps(1), writes(15, 20), allOps(35)[:2]}
	var recs []journal.Record
	for i, want := range batches {
		b := encode(t, i%2 == 0, want)
		var err error
		if recs, _, err = d.Decode(b, recs[:0]); err != nil {
			t.Fatal(err)
		}
		equalRecords(t, recs, want)
		b[hdrSize] ^= 1
		if _, _, err = d.Decode(b, recs[:0]); !journal.IsCorrupt(err) {
			t.Fatalf("error %v after a good batch, want corrupt", err)
		}
	}
}
