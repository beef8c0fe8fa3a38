// Package stream is the transport between a master and its replicas: frames
// over TLS 1.3 with mutual certificate authentication, the control messages
// they carry and the session built from them.
//
// A FrameWriter writes frames and a FrameReader reads them back one after
// another. A batch frame carries one journal batch as it is, with its own
// CRC; every other frame is a control frame whose body is a Message.
//
// # Frame layout
//
// A frame is a 12-byte header followed by the body. Integers are
// little-endian; offsets are from the start of the frame.
//
//	byte 0        2         3        4                 8                 12
//	     +--------+---------+--------+-----------------+-----------------+
//	     | magic  | version |  type  |  body length    |   CRC-32C       |
//	     |  "WF"  |  u8 = 1 |   u8   |      u32        |     u32         |
//	     +--------+---------+--------+-----------------+-----------------+
//	  12 | body: body length bytes                                       |
//	     +---------------------------------------------------------------+
//
// The CRC is CRC-32C (Castagnoli) computed over bytes 0 to 7 of the header
// followed by the body: everything in the frame except the CRC field itself.
// A reader checks the magic, then the version, then the type and the body
// length, all before reading the body, and the CRC once the body has
// arrived. The version comes first so that a peer of another version is told
// so (ErrVersion) rather than that its frames look corrupt. The body length
// is at most MaxFrameBody, the largest journal batch; a reader rejects a
// longer one before allocating for it, and grows its buffer only as the body
// arrives.
//
// # Types and messages
//
//	type  name       direction          body
//	1     hello      master -> replica  Hello
//	2     welcome    replica -> master  Welcome
//	3     batch      master -> replica  one journal batch (see package journal)
//	4     ack        replica -> master  Ack
//	5     heartbeat  both ways          Heartbeat
//	6     close      both ways          Close
//	7     reset      master -> replica  Reset
//	8     manifest request  master -> replica  ManifestRequest
//	9     manifest part     replica -> master  ManifestPart
//
// The body of a control frame is one msgpack map from field names to values,
// nothing before or after it. The names are the msgpack tags of the message
// structs (version, scenario, master, replica, epoch, root, compress,
// received, applied, durable, time, reason, from, keep, block_size, paths,
// data, last). Integers use msgpack's smallest
// form. A decoder ignores names it does not know and leaves missing fields at
// zero, so a later version can add fields without a new frame version.
//
// # Session
//
// The master connects and sends Hello. The replica answers Welcome, or Close
// with a reason and hangs up: a scenario it does not serve, an identity that
// is not what it expects, a protocol version it does not speak. When
// Welcome.Epoch matches Hello.Epoch and the master still holds everything
// after Welcome.Durable, it resumes there: batch frames from the first seq
// after Welcome.Durable, none missing, none twice (a batch that straddles
// it is sent whole; the replica keeps only what it lacks). Otherwise it
// sends Reset{Epoch, From}: the replica throws its data away and the batches
// from From on, a full copy of the tree followed by the changes since,
// rebuild it. With Keep set the replica keeps its data and the batches
// from From on repair it (a master restarted from its activity record).
// Before a Reset the master may send ManifestRequest: the replica applies
// all it holds, then answers with its manifest (package resync) in
// ManifestPart frames, the last marked, while its heartbeats go on; the
// batches after the Reset{Keep} then carry only what differs from it.
// The master stops sending once a window of bytes is sent and not yet
// acknowledged as received, so a slow replica holds back the sender rather
// than the master's memory; a side whose connection makes no progress for a
// timeout hangs up, and the master reconnects with exponential backoff. The
// replica sends Ack
// frames as its received, applied and durable seqs advance. Both sides send
// Heartbeat frames when they have had nothing else to send for a while.
// Either side may send Close, with its reason, before it hangs up.
//
// # Wire format
//
// These cannot change without a new Version: the magic, the header layout
// (the off* constants and FrameHeaderSize), the FrameType values, the
// message field names and, in effect, MaxFrameBody, since older readers
// reject longer bodies. testdata/frames.golden pins the bytes of a fixed
// sequence of frames; regenerate it with go test ./stream -update only for
// an intended change.
//
// # Errors
//
// Read errors say "frame at offset N", the frame's offset in the stream, and
// what was wrong, and wrap exactly one of ErrCorrupt, ErrTruncated or
// ErrVersion, or else the underlying reader's error. DecodeMsg errors wrap
// ErrCorrupt and name the frame type.
package stream
