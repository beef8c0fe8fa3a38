package stream

import (
	"bytes"
	"errors"
	"fmt"

	"github.com/vmihailenco/msgpack/v5"
	"github.com/vmihailenco/msgpack/v5/msgpcode"
)

// A Message is the body of a control frame: Hello, Welcome, Ack, Heartbeat,
// Close, Reset, ManifestRequest or ManifestPart. Each is a msgpack map keyed by the names in its msgpack tags,
// which are wire format; a decoder ignores keys it does not know, so later
// versions can add fields.
type Message interface{ Type() FrameType }

// Hello is the master's first frame.
type Hello struct {
	Version  int    `msgpack:"version"`
	Scenario string `msgpack:"scenario"` // scenario id; the replica refuses one it does not serve
	Master   string `msgpack:"master"`   // master identity (its certificate's common name)
	Replica  string `msgpack:"replica"`  // the replica identity the master expects
	Epoch    uint64 `msgpack:"epoch"`    // the master's incarnation: seqs are only comparable within one epoch
	Root     string `msgpack:"root"`     // the master's protected directory, for logs only
	Compress bool   `msgpack:"compress"`
}

// Welcome is the replica's answer to Hello: where its data stands.
type Welcome struct {
	Version  int    `msgpack:"version"`
	Scenario string `msgpack:"scenario"`
	Replica  string `msgpack:"replica"`
	Epoch    uint64 `msgpack:"epoch"`    // epoch of the replica's data (0: none yet)
	Received uint64 `msgpack:"received"` // last seq the replica holds in its spool
	Applied  uint64 `msgpack:"applied"`  // last seq applied
	Durable  uint64 `msgpack:"durable"`  // last seq durable
}

// Ack tells the master how far the replica has come. Epoch is the epoch of
// the replica's data: acks sent before it took a Reset speak of another
// epoch's seqs, and the master ignores them.
type Ack struct {
	Received uint64 `msgpack:"received"`
	Applied  uint64 `msgpack:"applied"`
	Durable  uint64 `msgpack:"durable"`
	Epoch    uint64 `msgpack:"epoch"`
}

// Heartbeat keeps an idle connection proven alive.
type Heartbeat struct {
	Time int64 `msgpack:"time"` // sender's clock, ns since the Unix epoch
}

// Reset tells a replica that cannot resume to throw its data away: the
// batches from From on, of the master's Epoch, rebuild it from an empty tree.
// With Keep, the replica keeps its data (after applying all it holds) and
// the batches from From on repair it: a new master resuming an earlier one's
// replicas.
type Reset struct {
	Epoch uint64 `msgpack:"epoch"`
	From  uint64 `msgpack:"from"`
	Keep  bool   `msgpack:"keep"`
}

// ManifestRequest asks a replica that cannot resume, before its Reset, for
// the manifest of what it holds (entries and block hashes, of the whole
// tree or of Paths only): what follows the Reset then sends only what
// differs from it.
type ManifestRequest struct {
	BlockSize int      `msgpack:"block_size"`
	Paths     []string `msgpack:"paths"` // nil: the whole tree
}

// ManifestPart is one part of a replica's manifest, in resync's manifest
// wire format; the last says so.
type ManifestPart struct {
	Data []byte `msgpack:"data"`
	Last bool   `msgpack:"last"`
}

// Close is the reason a side hangs up, sent as its last frame.
type Close struct {
	Reason string `msgpack:"reason"`
}

func (Hello) Type() FrameType           { return FrameHello }
func (Welcome) Type() FrameType         { return FrameWelcome }
func (Ack) Type() FrameType             { return FrameAck }
func (Heartbeat) Type() FrameType       { return FrameHeartbeat }
func (Close) Type() FrameType           { return FrameClose }
func (Reset) Type() FrameType           { return FrameReset }
func (ManifestRequest) Type() FrameType { return FrameManifestRequest }
func (ManifestPart) Type() FrameType    { return FrameManifestPart }

// DecodeMsg decodes the body of a control frame of type t. The message is a
// pointer (*Hello, not Hello). Errors wrap ErrCorrupt and name the type.
func DecodeMsg(t FrameType, body []byte) (Message, error) {
	var m Message
	switch t {
	case FrameHello:
		m = new(Hello)
	case FrameWelcome:
		m = new(Welcome)
	case FrameAck:
		m = new(Ack)
	case FrameHeartbeat:
		m = new(Heartbeat)
	case FrameClose:
		m = new(Close)
	case FrameReset:
		m = new(Reset)
	case FrameManifestRequest:
		m = new(ManifestRequest)
	case FrameManifestPart:
		m = new(ManifestPart)
	case FrameBatch:
		return nil, corruptf("stream: a batch frame holds no message")
	default:
		return nil, corruptf("stream: unknown frame type %d holds no message", uint8(t))
	}
	if err := unmarshal(body, m); err != nil {
		return nil, corruptf("stream: %s message: %v", t, err)
	}
	return m, nil
}

// unmarshal decodes body, which must be exactly one msgpack map, into m.
// msgpack alone would also take an array by position, nil or trailing
// bytes, none of which a writer of this protocol sends.
func unmarshal(body []byte, m any) error {
	if len(body) == 0 {
		return errors.New("empty body")
	}
	if c := body[0]; !msgpcode.IsFixedMap(c) && c != msgpcode.Map16 && c != msgpcode.Map32 {
		return fmt.Errorf("body starts with %#02x, not a msgpack map", c)
	}
	r := bytes.NewReader(body)
	dec := msgpack.GetDecoder()
	defer msgpack.PutDecoder(dec)
	dec.Reset(r)
	if err := dec.Decode(m); err != nil {
		return err
	}
	if r.Len() != 0 {
		return fmt.Errorf("%d bytes after the map", r.Len())
	}
	return nil
}
