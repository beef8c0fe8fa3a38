package journal

import (
	"encoding/binary"
	"hash/crc32"
	"math"
)

// Limits. Both are wire format in effect: a decoder rejects batches beyond
// them, so raising them breaks older replicas.
const (
	// MaxPayload bounds a batch's payload before and after compression, so
	// that a hostile header cannot make a decoder allocate more.
	MaxPayload = 64 << 20
	// MaxRecords bounds a batch's record count: a decoded Record is several
	// times larger than its smallest encoding.
	MaxRecords = 1 << 20
)

// HeaderSize is the size of the fixed batch header that precedes the payload.
const HeaderSize = 32

// Wire format: the header's magic, version and flag bits.
const (
	magic      = "WCJB"
	version    = 1
	flagLZ4    = 1 << 0 // the payload is one lz4 block
	knownFlags = flagLZ4
)

// Wire format: byte offsets of the header fields (drawn in doc.go).
const (
	offVersion    = 4
	offFlags      = 5
	offReserved   = 6
	offFirstSeq   = 8
	offCount      = 16
	offRawLen     = 20
	offPayloadLen = 24
	offCRC        = 28
)

// lz4MaxExpansion bounds how many bytes one byte of an lz4 block can
// produce (a match length byte adds at most 255), so the declared raw
// length can be checked against the payload before allocating for it.
const lz4MaxExpansion = 255

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// header is a batch header's variable fields.
type header struct {
	flags      uint8
	firstSeq   uint64
	count      uint32
	rawLen     uint32 // payload length before compression
	payloadLen uint32
	crc        uint32 // as parsed; putHeader computes its own
}

// size is the whole batch's length in bytes.
func (h *header) size() int { return HeaderSize + int(h.payloadLen) }

// checksum is the batch's CRC-32C: the header up to the CRC field, then the payload.
func checksum(hdr, payload []byte) uint32 {
	return crc32.Update(crc32.Update(0, castagnoli, hdr[:offCRC]), castagnoli, payload)
}

// checkCRC reports whether the payload of the whole batch b matches the CRC
// its header h holds.
func checkCRC(b []byte, h *header) error {
	if sum := checksum(b, b[HeaderSize:h.size()]); sum != h.crc {
		return corruptf("crc mismatch (stored %#08x, computed %#08x)", h.crc, sum)
	}
	return nil
}

// putHeader writes h into b[:HeaderSize] and seals it with the CRC of the
// header and payload.
func putHeader(b []byte, h *header, payload []byte) {
	copy(b, magic)
	b[offVersion] = version
	b[offFlags] = h.flags
	binary.LittleEndian.PutUint16(b[offReserved:], 0)
	binary.LittleEndian.PutUint64(b[offFirstSeq:], h.firstSeq)
	binary.LittleEndian.PutUint32(b[offCount:], h.count)
	binary.LittleEndian.PutUint32(b[offRawLen:], h.rawLen)
	binary.LittleEndian.PutUint32(b[offPayloadLen:], h.payloadLen)
	binary.LittleEndian.PutUint32(b[offCRC:], checksum(b, payload))
}

// parseHeader validates the header at the start of b without looking at the
// payload or the CRC. A b shorter than HeaderSize gives ErrTruncated unless
// the bytes it has already cannot start a batch.
func parseHeader(b []byte) (header, error) {
	if n := min(len(b), len(magic)); string(b[:n]) != magic[:n] {
		return header{}, corruptf("bad magic %q at byte 0, want %q", b[:n], magic)
	}
	if len(b) < HeaderSize {
		return header{}, truncatedf("header has %d of %d bytes", len(b), HeaderSize)
	}
	if v := b[offVersion]; v != version {
		return header{}, corruptf("unknown version %d at byte %d", v, offVersion)
	}
	if f := b[offFlags]; f&^knownFlags != 0 {
		return header{}, corruptf("unknown flags %#02x at byte %d", f, offFlags)
	}
	if r := binary.LittleEndian.Uint16(b[offReserved:]); r != 0 {
		return header{}, corruptf("reserved field %#04x at byte %d, want 0", r, offReserved)
	}
	h := header{
		flags:      b[offFlags],
		firstSeq:   binary.LittleEndian.Uint64(b[offFirstSeq:]),
		count:      binary.LittleEndian.Uint32(b[offCount:]),
		rawLen:     binary.LittleEndian.Uint32(b[offRawLen:]),
		payloadLen: binary.LittleEndian.Uint32(b[offPayloadLen:]),
		crc:        binary.LittleEndian.Uint32(b[offCRC:]),
	}
	switch {
	case h.payloadLen > MaxPayload:
		return h, corruptf("payload length %d at byte %d exceeds %d", h.payloadLen, offPayloadLen, MaxPayload)
	case h.rawLen > MaxPayload:
		return h, corruptf("uncompressed length %d at byte %d exceeds %d", h.rawLen, offRawLen, MaxPayload)
	case h.flags&flagLZ4 == 0 && h.rawLen != h.payloadLen:
		return h, corruptf("uncompressed length %d at byte %d differs from payload length %d of an uncompressed batch",
			h.rawLen, offRawLen, h.payloadLen)
	case uint64(h.rawLen) > lz4MaxExpansion*uint64(h.payloadLen):
		return h, corruptf("uncompressed length %d at byte %d is more than lz4 can expand %d payload bytes to",
			h.rawLen, offRawLen, h.payloadLen)
	case h.count == 0:
		return h, corruptf("record count 0 at byte %d", offCount)
	case h.count > MaxRecords:
		return h, corruptf("record count %d at byte %d exceeds %d", h.count, offCount, MaxRecords)
	case uint64(h.count)*minRecordSize > uint64(h.rawLen):
		return h, corruptf("record count %d at byte %d cannot fit in %d uncompressed payload bytes",
			h.count, offCount, h.rawLen)
	case h.firstSeq > math.MaxUint64-uint64(h.count-1):
		return h, corruptf("first seq %d at byte %d overflows with %d records", h.firstSeq, offFirstSeq, h.count)
	}
	return h, nil
}
