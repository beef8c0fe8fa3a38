// Package journal holds writecap's change records and the batch format that
// carries them from the master to its replicas and into spool segments.
//
// An Encoder turns a run of records with consecutive sequence numbers into
// one batch: the records are encoded with msgpack, the payload is compressed
// with lz4 and the whole is sealed with a CRC. A Decoder (or DecodeBatch)
// turns one batch back into records; a Reader reads batches one after
// another from a stream. A Spool queues batches in memory and in segment
// files until the replicas, or the replica's applier, are done with them.
//
// # Batch layout
//
// A batch is a 32-byte header followed by the payload. Integers are
// little-endian; offsets are from the start of the batch.
//
//	byte 0            4         5         6                   8
//	     +------------+---------+---------+-------------------+
//	     |   magic    | version |  flags  |     reserved      |
//	     |   "WCJB"   |  u8 = 1 |   u8    |      u16 = 0      |
//	     +------------+---------+---------+-------------------+
//	   8 |                   first seq  u64                   |
//	     +--------------------------+-------------------------+
//	  16 |     record count  u32    | uncompressed length u32 |
//	     +--------------------------+-------------------------+
//	  24 |    payload length  u32   |       CRC-32C  u32      |
//	     +--------------------------+-------------------------+
//	  32 |  payload: payload length bytes                     |
//	     |  flags bit 0 set:   one lz4 block of the records   |
//	     |  flags bit 0 clear: the records as they are        |
//	     +----------------------------------------------------+
//
// The CRC is CRC-32C (Castagnoli) computed over bytes 0 to 27 of the header
// followed by the payload as stored (compressed or not): everything in the
// batch except the CRC field itself. It is checked before the payload is
// decompressed or parsed, once each time a batch comes into the process or
// back from disk: DecodeChecked and Spool.AppendChecked are for a batch
// checked (or made by an Encoder) since, as the batches a Spool's Cursor
// returns are.
//
// Flag bit 0 says the payload is one lz4 block (the block format, not the
// lz4 frame format). An Encoder with Compress set still stores a batch
// uncompressed when lz4 would not make it smaller, and after a large batch
// that lz4 shrinks by less than an eighth it stores the next few as they are
// without trying. Other flag bits and the
// reserved field must be zero. Without compression the uncompressed length
// equals the payload length. Both lengths are at most MaxPayload and the
// record count is 1 to MaxRecords. Before allocating for them, a decoder also
// rejects an uncompressed length over 255 times the payload length (the most
// an lz4 block can expand) and a count the uncompressed length cannot hold
// (a record takes at least 14 bytes).
//
// # Records
//
// The uncompressed payload is exactly record count records back to back,
// nothing before, between or after them. Each record is a msgpack array of
// 13 elements, by position, without keys:
//
//	element  field   msgpack type
//	0        Seq     uint
//	1        Op      uint
//	2        Path    str
//	3        Path2   str
//	4        Offset  int
//	5        Length  int
//	6        Mode    uint
//	7        Flags   uint
//	8        UID     uint
//	9        GID     uint
//	10       Atime   int
//	11       Mtime   int
//	12       Data    bin, or nil for a nil slice
//
// Integers use msgpack's smallest form. A decoder requires the i-th record's
// Seq to be first seq + i, Op to be a known operation and the uint32 fields
// to fit; every field is kept whatever the op, so any Record round-trips.
// A prune record's Data is the names its directory keeps, each followed by a
// NUL byte; the replica removes every other entry of that directory.
//
// # Records of changes
//
// Changes is what a run of records changed without their bytes: per path a
// Change mask (content, attributes, entry created or moved there, entry
// gone, directory entries changed) and, for content, up to 64 coalesced byte
// ranges (more, or none, mean the whole file). A master keeps one instead of
// records its spool cannot hold, and appends one per batch to its activity
// record. Encode writes a msgpack map {"v": version 1, "f": everything
// changed, "p": {path: {"w": mask, "r": [{"o": offset, "l": length or -1
// for to the end}]}}} with sorted keys; DecodeChanges checks the version,
// the mask bits and the ranges and wraps ErrCorrupt otherwise. The mask bits
// and these keys are on-disk format.
//
// # Wire format
//
// These cannot change without a new version: the magic, the version, the
// flag bits, the header layout (the off* constants and HeaderSize), the
// record field order and count, the Op values and Set* bits in record.go,
// and, in effect, MaxPayload and MaxRecords, since older decoders reject
// batches beyond them. testdata/*.golden pins the bytes of fixed batches;
// regenerate them with go test ./journal -update only for an intended change.
//
// # Spool segments
//
// A Spool's files are segments in its directory, each named after the seq
// its first batch has: twenty decimal digits, zero-padded so that names sort
// as seqs do, then ".wcs", as in 00000000000000000042.wcs. Other names are
// not segments and are left alone. A segment is a 16-byte header followed by
// batches back to back, exactly as Encoder.AppendBatch made them, nothing
// before, between or after them:
//
//	byte 0            4         5                             8
//	     +------------+---------+-----------------------------+
//	     |   magic    | version |          reserved           |
//	     |   "WCJS"   |  u8 = 1 |        3 bytes = 0          |
//	     +------------+---------+-----------------------------+
//	   8 |          first seq u64 (the one in the name)       |
//	     +----------------------------------------------------+
//	  16 |  batch (Batch layout): header, payload             |
//	     +----------------------------------------------------+
//	     |  batch whose first seq follows the last one's last |
//	     +----------------------------------------------------+
//	     |  ...                                               |
//	     +----------------------------------------------------+
//
// The first batch starts at the header's first seq, each later batch at the
// seq after the previous one's last, and each segment at the seq after the
// previous segment's last batch: the seqs of a spool directory are one run
// without breaks. A segment holding no batch yet is only its header; the
// newest segment is kept even when all its batches are released, so that a
// reopened spool knows the last seq it was given.
//
// There is no checksum over the segment: each batch carries its own CRC-32C
// over its header bytes 0 to 27 and its payload as stored (see Batch
// layout), which is checked when the spool opens the segment and again
// whenever a cursor reads the batch from disk. The segment header is checked
// field by field instead: magic, version, zero reserved bytes, and a first
// seq equal to the name's.
//
// A crash can leave a batch half written, and a disk can damage one. When a
// Spool opens, it reads its segments in seq order, checking each header and
// each batch's header, length, CRC and seqs, without decoding records. At
// the first problem nothing further is trusted: the segment is truncated
// just before the bad batch (removed, if its own header is bad or it does not
// follow the segment before it), every later segment is removed, a warning
// names the file, the offset and what was wrong, and the repair is made
// durable before OpenSpool returns. The spool then holds the batches before
// the problem and goes on after the last of them.
//
// On-disk format, which cannot change without a new segment version: the
// segment header's magic, version and layout (segMagic, segVersion,
// segHeaderSize and the segOff* constants), the file name (segNameDigits and
// segExt), and everything the batch layout fixes. SegmentSize is not part of
// it: a spool reads segments of any size.
//
// # Errors
//
// Decode errors wrap ErrCorrupt or ErrTruncated and say what was wrong and
// where: "batch at offset N" is the batch's offset in the buffer given to
// Decode (always 0) or in a Reader's stream; "byte N" inside a header is
// from the start of the batch; "payload byte N" is from the start of the
// uncompressed payload. Record errors name the record's index and the seq
// it should carry. A Spool's errors about a file name it, and a batch in a
// segment by its offset in the file: "journal: segment PATH: batch at offset
// N: ..."; a refused Append wraps ErrInvalid or ErrSpoolFull, a cursor that
// fell behind what was released ErrGap.
package journal
