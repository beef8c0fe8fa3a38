package journal

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"

	"github.com/pierrec/lz4/v4"
	"github.com/vmihailenco/msgpack/v5"
)

// Interning bounds: enough for a busy working set of paths, small enough
// that hostile input cannot make the cache hold much memory.
const (
	maxInterned   = 4096
	maxInternSize = 4096
)

// A Decoder decodes batches, reusing its buffers from one call to the next.
// Its zero value is ready to use; it must not be copied after first use and
// is not safe for concurrent use.
type Decoder struct {
	// Alias lets the records of an uncompressed batch point into the b
	// given to Decode instead of into a copy the Decoder owns: b must then
	// stay unchanged while they are used.
	Alias bool

	raw  []byte // the last batch's uncompressed payload; decoded Data aliases it
	own  []byte // what the Decoder uncompresses or copies into
	br   bytes.Reader
	mp   *msgpack.Decoder
	strs map[string]string // interned paths, so repeated paths do not allocate
	err  error             // the first error of the record being decoded
}

// DecodeBatch decodes the batch at the start of b like Decoder.Decode, with a
// fresh Decoder: the records' Data is owned by nobody else, and aliases
// neither b nor any later call's records.
func DecodeBatch(b []byte, recs []Record) (out []Record, n int, err error) {
	var d Decoder
	return d.Decode(b, recs)
}

// Decode decodes the one batch at the start of b, appends its records to recs
// and returns the extended slice and the batch's length in bytes; b may hold
// more after it. The records' Data slices point into memory owned by d and
// stay valid until the next call to Decode. A batch is all or nothing: on
// error recs is returned as given, n is 0, and err wraps ErrCorrupt or
// ErrTruncated with what was wrong and its byte offset.
func (d *Decoder) Decode(b []byte, recs []Record) ([]Record, int, error) {
	return d.decodeAt(b, recs, true)
}

// DecodeChecked is Decode for a batch whose CRC was checked since it last
// left this process's memory, as a Spool's Cursor checks what it returns:
// the CRC is not computed again.
func (d *Decoder) DecodeChecked(b []byte, recs []Record) ([]Record, int, error) {
	return d.decodeAt(b, recs, false)
}

func (d *Decoder) decodeAt(b []byte, recs []Record, crc bool) ([]Record, int, error) {
	out, n, err := d.decode(b, recs, crc)
	if err != nil {
		return recs, 0, fmt.Errorf("journal: batch at offset 0: %w", err)
	}
	return out, n, nil
}

// decode does Decode's work with errors that do not yet say where the batch
// starts, which only the caller knows.
func (d *Decoder) decode(b []byte, recs []Record, crc bool) ([]Record, int, error) {
	h, err := parseHeader(b)
	if err != nil {
		return recs, 0, err
	}
	if len(b) < h.size() {
		return recs, 0, truncatedf("payload has %d of %d bytes", len(b)-HeaderSize, h.payloadLen)
	}
	payload := b[HeaderSize:h.size()]
	if crc {
		if err := checkCRC(b, &h); err != nil {
			return recs, 0, err
		}
	}
	if err := d.unpack(&h, payload); err != nil {
		return recs, 0, err
	}
	out, err := d.records(&h, recs)
	if err != nil {
		return recs, 0, err
	}
	return out, h.size(), nil
}

// unpack leaves the uncompressed payload in d.raw. Unless d.Alias is set an
// uncompressed payload is copied too, so that decoded Data never aliases the
// caller's b.
func (d *Decoder) unpack(h *header, payload []byte) error {
	if h.flags&flagLZ4 == 0 && d.Alias {
		d.raw = payload
		return nil
	}
	d.own = slices.Grow(d.own[:0], int(h.rawLen))[:h.rawLen]
	d.raw = d.own
	if h.flags&flagLZ4 == 0 {
		copy(d.raw, payload)
		return nil
	}
	n, err := lz4.UncompressBlock(payload, d.raw)
	if err != nil {
		return corruptf("lz4 payload at byte %d: %v", HeaderSize, err)
	}
	if n != len(d.raw) {
		return corruptf("lz4 payload at byte %d holds %d bytes, header says %d", HeaderSize, n, h.rawLen)
	}
	return nil
}

// records decodes h.count records from d.raw and appends them to recs.
func (d *Decoder) records(h *header, recs []Record) ([]Record, error) {
	d.br.Reset(d.raw)
	if d.mp == nil {
		// A bytes.Reader is an io.ByteScanner, so msgpack reads it directly
		// and d.pos stays exact.
		d.mp = msgpack.NewDecoder(&d.br)
	}
	start := len(recs)
	for i := range h.count {
		seq := h.firstSeq + uint64(i)
		recs = append(recs, Record{})
		if err := d.record(&recs[len(recs)-1], seq); err != nil {
			clear(recs[start:]) // drop references into d.raw
			return recs[:start], fmt.Errorf("record %d (seq %d): %w", i, seq, err)
		}
	}
	if left := d.br.Len(); left != 0 {
		clear(recs[start:])
		return recs[:start], corruptf("%d bytes at payload byte %d after the last record", left, d.pos())
	}
	return recs, nil
}

// record decodes one record into r, which must be zero, and checks that it
// carries seq and a known op.
func (d *Decoder) record(r *Record, seq uint64) error {
	d.err = nil
	at := d.pos()
	if n, err := d.mp.DecodeArrayLen(); err != nil {
		d.fail("record", at, err)
	} else if n != fieldCount {
		return corruptf("%d fields at payload byte %d, want %d", n, at, fieldCount)
	}
	at = d.pos()
	if r.Seq = d.uint("seq", math.MaxUint64); d.err == nil && r.Seq != seq {
		return corruptf("seq %d at payload byte %d, want %d: seqs must be consecutive", r.Seq, at, seq)
	}
	at = d.pos()
	if r.Op = Op(d.uint("op", math.MaxUint8)); d.err == nil && !r.Op.Valid() {
		return corruptf("unknown op %d at payload byte %d", uint8(r.Op), at)
	}
	r.Path = d.string("path")
	r.Path2 = d.string("path2")
	r.Offset = d.int("offset")
	r.Length = d.int("length")
	r.Mode = uint32(d.uint("mode", math.MaxUint32))
	r.Flags = uint32(d.uint("flags", math.MaxUint32))
	r.UID = uint32(d.uint("uid", math.MaxUint32))
	r.GID = uint32(d.uint("gid", math.MaxUint32))
	r.Atime = d.int("atime")
	r.Mtime = d.int("mtime")
	r.Data = d.bytes("data")
	return d.err
}

// pos is the offset of the next unread byte in the uncompressed payload.
func (d *Decoder) pos() int { return len(d.raw) - d.br.Len() }

// fail records the first error of a record, naming the field and its offset.
// msgpack's io.EOF must not leak through: to a Reader's caller it means a
// clean end of stream.
func (d *Decoder) fail(field string, at int, err error) {
	if d.err != nil {
		return
	}
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		d.err = corruptf("%s at payload byte %d: payload ends inside the record", field, at)
		return
	}
	d.err = corruptf("%s at payload byte %d: %v", field, at, err)
}

// The field readers below do nothing once the record has an error, so that
// record reads as a plain list of fields.

func (d *Decoder) uint(field string, limit uint64) uint64 {
	if d.err != nil {
		return 0
	}
	at := d.pos()
	v, err := d.mp.DecodeUint64()
	if err != nil {
		d.fail(field, at, err)
		return 0
	}
	if v > limit {
		d.err = corruptf("%s %d at payload byte %d exceeds %d", field, v, at, limit)
		return 0
	}
	return v
}

func (d *Decoder) int(field string) int64 {
	if d.err != nil {
		return 0
	}
	at := d.pos()
	v, err := d.mp.DecodeInt64()
	if err != nil {
		d.fail(field, at, err)
	}
	return v
}

// bytes returns a msgpack str or bin as a slice of d.raw, without copying;
// its capacity ends with it so appending cannot overwrite the next field.
func (d *Decoder) bytes(field string) []byte {
	if d.err != nil {
		return nil
	}
	at := d.pos()
	n, err := d.mp.DecodeBytesLen()
	if err != nil {
		d.fail(field, at, err)
		return nil
	}
	if n < 0 { // msgpack nil
		return nil
	}
	if n > d.br.Len() {
		d.err = corruptf("%s at payload byte %d: length %d exceeds the %d bytes left", field, at, n, d.br.Len())
		return nil
	}
	p := d.pos()
	_, _ = d.br.Seek(int64(n), io.SeekCurrent) // cannot fail: n is within the reader
	return d.raw[p : p+n : p+n]
}

func (d *Decoder) string(field string) string {
	b := d.bytes(field)
	if len(b) == 0 {
		return ""
	}
	if len(b) > maxInternSize {
		return string(b)
	}
	if s, ok := d.strs[string(b)]; ok {
		return s
	}
	if len(d.strs) >= maxInterned || d.strs == nil {
		d.strs = make(map[string]string)
	}
	s := string(b)
	d.strs[s] = s
	return s
}
