package journal

import (
	"errors"
	"fmt"
	"io"
	"slices"
)

// minReadChunk is the first step by which a Reader grows its buffer for a
// payload; later steps double what has arrived.
const minReadChunk = 64 << 10

// A Reader reads batches one after another from a stream, such as a spool
// segment. After the first error every call returns that error: nothing past
// a bad batch is trusted.
type Reader struct {
	r   io.Reader
	off int64  // stream offset of the next batch
	buf []byte // the current batch, header and payload
	dec Decoder
	err error
}

// NewReader returns a Reader that reads batches from r.
func NewReader(r io.Reader) *Reader { return &Reader{r: r} }

// Next reads the next batch and appends its records to recs. Their Data
// stays valid until the next call. At a clean end of the stream, between
// batches, it returns io.EOF; a stream ending inside a batch gives an error
// wrapping ErrTruncated. Errors name the batch's offset in the stream, and on
// error recs is returned as given.
func (r *Reader) Next(recs []Record) ([]Record, error) {
	if r.err != nil {
		return recs, r.err
	}
	out, n, err := r.next(recs)
	if err != nil {
		if err != io.EOF {
			err = fmt.Errorf("journal: batch at offset %d: %w", r.off, err)
		}
		r.err = err
		return recs, err
	}
	r.off += int64(n)
	return out, nil
}

func (r *Reader) next(recs []Record) ([]Record, int, error) {
	r.buf = slices.Grow(r.buf[:0], HeaderSize)[:HeaderSize]
	n, err := io.ReadFull(r.r, r.buf)
	switch {
	case errors.Is(err, io.EOF):
		return recs, 0, io.EOF
	case errors.Is(err, io.ErrUnexpectedEOF):
		// parseHeader says corrupt rather than truncated if what did arrive
		// cannot start a batch, as Decode would.
		_, err = parseHeader(r.buf[:n])
		return recs, 0, err
	case err != nil:
		return recs, 0, fmt.Errorf("reading header: %w", err)
	}
	h, err := parseHeader(r.buf)
	if err != nil {
		return recs, 0, err
	}
	if err := r.fill(h.size()); err != nil {
		return recs, 0, err
	}
	return r.dec.decode(r.buf, recs, true)
}

// fill reads until r.buf holds size bytes. It grows the buffer no faster than
// data arrives, so a hostile length followed by little data costs little.
func (r *Reader) fill(size int) error {
	for len(r.buf) < size {
		have := len(r.buf)
		chunk := min(size-have, max(have, minReadChunk))
		r.buf = slices.Grow(r.buf, chunk)[:have+chunk]
		got, err := io.ReadFull(r.r, r.buf[have:])
		r.buf = r.buf[:have+got]
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return truncatedf("payload has %d of %d bytes", len(r.buf)-HeaderSize, size-HeaderSize)
		}
		if err != nil {
			return fmt.Errorf("reading payload: %w", err)
		}
	}
	return nil
}
