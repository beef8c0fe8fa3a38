package journal

import (
	"bytes"
	"fmt"
	"math"
	"slices"

	"github.com/pierrec/lz4/v4"
	"github.com/vmihailenco/msgpack/v5"
)

// Wire format: a record is a msgpack array of fieldCount elements in the
// order encodeRecord writes them.
const (
	fieldCount    = 13
	minRecordSize = 1 + fieldCount // array header and one byte per field
)

// A batch of at least minSkipBatch bytes that lz4 shrinks by less than an
// eighth makes the Encoder store the next skipAfterMiss batches as they are.
const (
	minSkipBatch  = 64 << 10
	skipAfterMiss = 8
)

// EncoderOptions configures an Encoder.
type EncoderOptions struct {
	// Compress lz4-compresses each batch's payload, except when that would
	// not make it smaller: such a batch is stored uncompressed.
	Compress bool
}

// An Encoder turns records into batches. It keeps its buffers between
// batches, so it is not safe for concurrent use.
type Encoder struct {
	lz   *lz4.Compressor // nil when not compressing
	skip int             // batches to store without trying lz4: recent ones did not compress
	// raw and packed start with room for the header, so that either is the
	// whole batch once the header is put in: the batch is one copy into
	// dst, whose new bytes need no zeroing first.
	raw    bytes.Buffer // the batch's msgpack payload before compression
	packed []byte       // the payload compressed
	mp     *msgpack.Encoder
}

// NewEncoder returns an Encoder configured by opts.
func NewEncoder(opts EncoderOptions) *Encoder {
	e := &Encoder{}
	if opts.Compress {
		e.lz = new(lz4.Compressor)
	}
	e.mp = msgpack.NewEncoder(&e.raw)
	return e
}

// AppendBatch appends one batch holding recs to dst and returns the extended
// slice. recs must be non-empty, have known ops and strictly consecutive
// seqs; otherwise the error wraps ErrInvalid or ErrTooLarge and dst is
// returned unchanged.
func (e *Encoder) AppendBatch(dst []byte, recs []Record) ([]byte, error) {
	if err := checkBatch(recs); err != nil {
		return dst, err
	}
	var room [HeaderSize]byte
	e.raw.Reset()
	e.raw.Write(room[:])
	for i := range recs {
		if err := encodeRecord(e.mp, &recs[i]); err != nil {
			return dst, fmt.Errorf("journal: encode: record %d (seq %d): %w", i, recs[i].Seq, err)
		}
		if e.raw.Len()-HeaderSize > MaxPayload {
			return dst, fmt.Errorf("journal: encode: payload exceeds %d bytes at record %d (seq %d): %w",
				MaxPayload, i, recs[i].Seq, ErrTooLarge)
		}
	}
	batch := e.raw.Bytes()
	raw := batch[HeaderSize:]
	h := header{firstSeq: recs[0].Seq, count: uint32(len(recs)), rawLen: uint32(len(raw))}
	switch {
	case e.lz == nil:
	case e.skip > 0:
		e.skip--
	default:
		// Given the bound, the compressor always finishes.
		bound := lz4.CompressBlockBound(len(raw))
		e.packed = slices.Grow(e.packed[:0], HeaderSize+bound)[:HeaderSize+bound]
		n, err := e.lz.CompressBlock(raw, e.packed[HeaderSize:])
		if err != nil {
			return dst, fmt.Errorf("journal: encode: lz4: %w", err)
		}
		if n > 0 && n < len(raw) {
			h.flags = flagLZ4
			batch = e.packed[:HeaderSize+n]
		}
		// Data that does not compress (media, encrypted or compressed
		// files) costs lz4's time for nothing: try again later.
		if len(raw) >= minSkipBatch && (n == 0 || n > len(raw)-len(raw)/8) {
			e.skip = skipAfterMiss
		}
	}
	h.payloadLen = uint32(len(batch) - HeaderSize)
	start := len(dst)
	dst = append(dst, batch...)
	putHeader(dst[start:], &h, dst[start+HeaderSize:])
	return dst, nil
}

// checkBatch rejects what a decoder would reject, before any encoding work,
// including records whose strings and data alone exceed MaxPayload: encoding
// them first would grow the Encoder's buffer to their size.
func checkBatch(recs []Record) error {
	if len(recs) == 0 {
		return fmt.Errorf("journal: encode: no records: %w", ErrInvalid)
	}
	if len(recs) > MaxRecords {
		return fmt.Errorf("journal: encode: %d records exceed %d: %w", len(recs), MaxRecords, ErrTooLarge)
	}
	size := 0
	for i := range recs {
		r := &recs[i]
		if size += minRecordSize + len(r.Path) + len(r.Path2) + len(r.Data); size > MaxPayload {
			return fmt.Errorf("journal: encode: records up to %d (seq %d) need more than %d bytes: %w",
				i, r.Seq, MaxPayload, ErrTooLarge)
		}
		if !r.Op.Valid() {
			return fmt.Errorf("journal: encode: record %d (seq %d): unknown %s: %w", i, r.Seq, r.Op, ErrInvalid)
		}
		if i > 0 && (recs[i-1].Seq == math.MaxUint64 || r.Seq != recs[i-1].Seq+1) {
			return fmt.Errorf("journal: encode: record %d: seq %d does not follow seq %d: %w",
				i, r.Seq, recs[i-1].Seq, ErrInvalid)
		}
	}
	return nil
}

// encodeRecord writes r's fields as a positional msgpack array: no keys and
// no reflection. The order is wire format.
func encodeRecord(m *msgpack.Encoder, r *Record) error {
	// Calls in a composite literal run left to right, so the fields go out
	// in order. Writes to a bytes.Buffer cannot fail, so checking the errors
	// afterwards loses nothing.
	for _, err := range [...]error{
		m.EncodeArrayLen(fieldCount),
		m.EncodeUint(r.Seq),
		m.EncodeUint(uint64(r.Op)),
		m.EncodeString(r.Path),
		m.EncodeString(r.Path2),
		m.EncodeInt(r.Offset),
		m.EncodeInt(r.Length),
		m.EncodeUint(uint64(r.Mode)),
		m.EncodeUint(uint64(r.Flags)),
		m.EncodeUint(uint64(r.UID)),
		m.EncodeUint(uint64(r.GID)),
		m.EncodeInt(r.Atime),
		m.EncodeInt(r.Mtime),
		m.EncodeBytes(r.Data),
	} {
		if err != nil {
			return err
		}
	}
	return nil
}
