package stream

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"net"
	"slices"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/writecap/writecap/journal"
)

// FrameType says what a frame's body holds. Wire format.
type FrameType uint8

const (
	FrameHello     FrameType = 1 // master -> replica, first frame: Hello
	FrameWelcome   FrameType = 2 // replica -> master, answer: Welcome
	FrameBatch     FrameType = 3 // master -> replica: one journal batch (body = batch bytes)
	FrameAck       FrameType = 4 // replica -> master: Ack
	FrameHeartbeat FrameType = 5 // both ways: Heartbeat
	FrameClose     FrameType = 6 // both ways: Close, the reason a side hangs up
	FrameReset     FrameType = 7 // master -> replica: Reset, start over from a full copy
	// master -> replica, before a Reset: ManifestRequest
	FrameManifestRequest FrameType = 8
	// replica -> master, the answer: ManifestPart, one or more
	FrameManifestPart FrameType = 9
)

var frameNames = [...]string{
	FrameHello: "hello", FrameWelcome: "welcome", FrameBatch: "batch",
	FrameAck: "ack", FrameHeartbeat: "heartbeat", FrameClose: "close", FrameReset: "reset",
	FrameManifestRequest: "manifest request", FrameManifestPart: "manifest part",
}

func (t FrameType) String() string {
	if t.valid() {
		return frameNames[t]
	}
	return fmt.Sprintf("FrameType(%d)", uint8(t))
}

func (t FrameType) valid() bool { return t >= FrameHello && t <= FrameManifestPart }

// control reports whether frames of type t carry a message rather than a batch.
func (t FrameType) control() bool { return t.valid() && t != FrameBatch }

// Version is the protocol version, in every frame header and in Hello and
// Welcome. Wire format.
const Version = 2

// FrameHeaderSize is the size of the fixed header that precedes a frame's body.
const FrameHeaderSize = 12

// MaxFrameBody bounds a frame's body: a batch frame carries exactly one
// journal batch, and control frames are far smaller. Wire format in effect:
// a reader rejects longer bodies before reading them.
const MaxFrameBody = journal.MaxPayload + journal.HeaderSize

// Wire format: the header's magic and the byte offsets of its fields (drawn
// in doc.go).
const (
	magic      = "WF"
	offVersion = 2
	offType    = 3
	offLength  = 4
	offCRC     = 8
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// checksum is a frame's CRC-32C: the header up to the CRC field, then the body.
func checksum(hdr, body []byte) uint32 {
	return crc32.Update(crc32.Update(0, castagnoli, hdr[:offCRC]), castagnoli, body)
}

// copyLimit is the largest body WriteFrame copies behind the header so that
// the frame leaves in one Write (over TLS, one record). A larger body is
// written from where it lies: copying it would cost more than the second
// write, and on a plain TCP connection net.Buffers makes both one writev.
const copyLimit = 16 << 10

// A FrameWriter writes frames to a stream. It is not safe for concurrent use:
// callers hold a lock. After a failed write the stream may end inside a
// frame, so every later call returns the first error.
type FrameWriter struct {
	w   io.Writer
	buf []byte // header and a small body, reused
	msg bytes.Buffer
	enc *msgpack.Encoder // encodes into msg
	err error
}

// NewFrameWriter returns a FrameWriter that writes frames to w.
func NewFrameWriter(w io.Writer) *FrameWriter {
	fw := &FrameWriter{w: w}
	fw.enc = msgpack.NewEncoder(&fw.msg)
	fw.enc.UseCompactInts(true)
	return fw
}

// WriteFrame writes one frame of type t holding body.
func (w *FrameWriter) WriteFrame(t FrameType, body []byte) error {
	if w.err != nil {
		return w.err
	}
	if !t.valid() {
		return fmt.Errorf("stream: writing a frame of unknown type %d", uint8(t))
	}
	if len(body) > MaxFrameBody {
		return fmt.Errorf("stream: writing a %s frame: body of %d bytes exceeds %d", t, len(body), MaxFrameBody)
	}
	w.buf = slices.Grow(w.buf[:0], FrameHeaderSize)[:FrameHeaderSize]
	hdr := w.buf
	copy(hdr, magic)
	hdr[offVersion] = Version
	hdr[offType] = byte(t)
	binary.LittleEndian.PutUint32(hdr[offLength:], uint32(len(body)))
	binary.LittleEndian.PutUint32(hdr[offCRC:], checksum(hdr, body))
	var err error
	if len(body) <= copyLimit {
		w.buf = append(w.buf, body...)
		_, err = w.w.Write(w.buf)
	} else {
		bufs := net.Buffers{hdr, body}
		_, err = bufs.WriteTo(w.w)
	}
	if err != nil {
		w.err = fmt.Errorf("stream: writing a %s frame: %w", t, err)
		return w.err
	}
	return nil
}

// WriteMsg encodes m as a msgpack map and writes it as a frame of m's type.
func (w *FrameWriter) WriteMsg(m Message) error {
	t := m.Type()
	if !t.control() {
		return fmt.Errorf("stream: %T claims frame type %s, which carries no message", m, t)
	}
	w.msg.Reset()
	if err := w.enc.Encode(m); err != nil {
		return fmt.Errorf("stream: encoding a %s message: %w", t, err)
	}
	return w.WriteFrame(t, w.msg.Bytes())
}

// readBufferSize holds a few TLS records, so that small frames cost one read
// from the connection between them.
const readBufferSize = 64 << 10

// minReadChunk is the first step by which a FrameReader grows its buffer for
// a body; later steps double what has arrived.
const minReadChunk = 64 << 10

// A FrameReader reads frames one after another from a stream. After the
// first error every call returns that error: nothing past a bad frame is
// trusted.
type FrameReader struct {
	r   *bufio.Reader
	off int64 // stream offset of the next frame
	hdr [FrameHeaderSize]byte
	buf []byte // the current body
	err error
}

// NewFrameReader returns a FrameReader that reads frames from r through a
// buffer of its own.
func NewFrameReader(r io.Reader) *FrameReader {
	return &FrameReader{r: bufio.NewReaderSize(r, readBufferSize)}
}

// ReadFrame reads the next frame. Its body is valid until the next call. At
// a clean end of the stream, between frames, it returns io.EOF. Other errors
// name the frame's offset in the stream and wrap ErrCorrupt, ErrTruncated,
// ErrVersion or the reader's own error.
func (r *FrameReader) ReadFrame() (FrameType, []byte, error) {
	if r.err != nil {
		return 0, nil, r.err
	}
	t, err := r.next()
	if err != nil {
		if err != io.EOF {
			err = fmt.Errorf("stream: frame at offset %d: %w", r.off, err)
		}
		r.err = err
		return 0, nil, err
	}
	r.off += FrameHeaderSize + int64(len(r.buf))
	return t, r.buf, nil
}

func (r *FrameReader) next() (FrameType, error) {
	n, err := io.ReadFull(r.r, r.hdr[:])
	switch {
	case errors.Is(err, io.EOF):
		return 0, io.EOF
	case errors.Is(err, io.ErrUnexpectedEOF):
		// Bytes that cannot start a frame are corrupt however many arrived.
		if err := checkMagic(r.hdr[:n]); err != nil {
			return 0, err
		}
		return 0, truncatedf("header has %d of %d bytes", n, FrameHeaderSize)
	case err != nil:
		return 0, fmt.Errorf("reading header: %w", err)
	}
	t, size, err := parseHeader(r.hdr[:])
	if err != nil {
		return 0, err
	}
	if err := r.fill(size); err != nil {
		return 0, err
	}
	stored := binary.LittleEndian.Uint32(r.hdr[offCRC:])
	if sum := checksum(r.hdr[:], r.buf); sum != stored {
		return 0, corruptf("crc mismatch (stored %#08x, computed %#08x)", stored, sum)
	}
	return t, nil
}

func checkMagic(b []byte) error {
	if n := min(len(b), len(magic)); string(b[:n]) != magic[:n] {
		return corruptf("bad magic %q, want %q", b[:n], magic)
	}
	return nil
}

// parseHeader checks a whole header, all but its CRC, and returns the type
// and body length. The version comes before the other fields: a later
// version may add types or change limits, and its peer should hear that its
// version is the trouble.
func parseHeader(b []byte) (FrameType, int, error) {
	if err := checkMagic(b); err != nil {
		return 0, 0, err
	}
	if v := b[offVersion]; v != Version {
		return 0, 0, fmt.Errorf("protocol version %d, want %d: %w", v, Version, ErrVersion)
	}
	t := FrameType(b[offType])
	if !t.valid() {
		return 0, 0, corruptf("unknown frame type %d", uint8(t))
	}
	size := binary.LittleEndian.Uint32(b[offLength:])
	if size > MaxFrameBody {
		return 0, 0, corruptf("%s body length %d exceeds %d", t, size, MaxFrameBody)
	}
	return t, int(size), nil
}

// fill reads a body of size bytes into r.buf. It grows the buffer no faster
// than data arrives, so a hostile length followed by little data costs little.
func (r *FrameReader) fill(size int) error {
	r.buf = r.buf[:0]
	for len(r.buf) < size {
		have := len(r.buf)
		chunk := min(size-have, max(have, minReadChunk))
		r.buf = slices.Grow(r.buf, chunk)[:have+chunk]
		got, err := io.ReadFull(r.r, r.buf[have:])
		r.buf = r.buf[:have+got]
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return truncatedf("body has %d of %d bytes", len(r.buf), size)
		}
		if err != nil {
			return fmt.Errorf("reading body: %w", err)
		}
	}
	return nil
}
