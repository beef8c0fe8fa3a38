package stream_test

import (
	"bytes"
	"fmt"
	"math"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/writecap/writecap/stream"
)

func TestMessageRoundTrip(t *testing.T) {
	tests := []struct {
		name string
		msg  stream.Message
	}{
		{name: "hello", msg: stream.Hello{Version: stream.Version, Scenario: "pg-main", Master: "db1", Replica: "db2",
			Epoch: math.MaxUint64, Root: "/srv/pgdata", Compress: true}},
		{name: "hello zero", msg: stream.Hello{}},
		{name: "welcome", msg: stream.Welcome{Version: stream.Version, Scenario: "pg-main", Replica: "db2",
			Epoch: 7, Received: 1 << 40, Applied: 1<<40 - 1, Durable: 1<<40 - 2}},
		{name: "welcome zero", msg: stream.Welcome{}},
		{name: "ack", msg: stream.Ack{Received: math.MaxUint64, Applied: 1 << 33, Durable: 1}},
		{name: "ack zero", msg: stream.Ack{}},
		{name: "heartbeat", msg: stream.Heartbeat{Time: 1_700_000_000_000_000_000}},
		{name: "heartbeat negative", msg: stream.Heartbeat{Time: math.MinInt64}},
		{name: "close", msg: stream.Close{Reason: "unknown scenario \"x\": naïve ☃"}},
		{name: "close zero", msg: stream.Close{}},
		{name: "reset", msg: stream.Reset{Epoch: 1 << 40, From: 12}},
		{name: "manifest request", msg: stream.ManifestRequest{BlockSize: 4096, Paths: []string{"a/b", "c"}}},
		{name: "manifest part", msg: stream.ManifestPart{Data: []byte{1, 2, 3}, Last: true}},
		{name: "pointer", msg: &stream.Ack{Received: 5}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			if err := stream.NewFrameWriter(&buf).WriteMsg(tt.msg); err != nil {
				t.Fatal(err)
			}
			ft, body, err := stream.NewFrameReader(&buf).ReadFrame()
			if err != nil {
				t.Fatal(err)
			}
			if ft != tt.msg.Type() {
				t.Fatalf("frame type %s, want %s", ft, tt.msg.Type())
			}
			got, err := stream.DecodeMsg(ft, body)
			if err != nil {
				t.Fatal(err)
			}
			// DecodeMsg returns pointers, whichever WriteMsg was given.
			want := reflect.ValueOf(tt.msg)
			if want.Kind() != reflect.Pointer {
				p := reflect.New(want.Type())
				p.Elem().Set(want)
				want = p
			}
			if !reflect.DeepEqual(got, want.Interface()) {
				t.Fatalf("got %#v, want %#v", got, want.Interface())
			}
		})
	}
}

// TestMessageKeys pins the field names, which are wire format.
func TestMessageKeys(t *testing.T) {
	tests := []struct {
		msg  stream.Message
		keys string
	}{
		{stream.Hello{}, "compress epoch master replica root scenario version"},
		{stream.Welcome{}, "applied durable epoch received replica scenario version"},
		{stream.Ack{}, "applied durable epoch received"},
		{stream.Heartbeat{}, "time"},
		{stream.Close{}, "reason"},
		{stream.Reset{}, "epoch from keep"},
		{stream.ManifestRequest{}, "block_size paths"},
		{stream.ManifestPart{}, "data last"},
	}
	for _, tt := range tests {
		var m map[string]any
		if err := msgpack.Unmarshal(msgBody(t, tt.msg), &m); err != nil {
			t.Fatal(err)
		}
		var keys []string
		for k := range m {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		if got := strings.Join(keys, " "); got != tt.keys {
			t.Errorf("%s keys %q, want %q", tt.msg.Type(), got, tt.keys)
		}
	}
}

// TestDecodeMsgCompatible: a later version may add keys, which are skipped,
// and an earlier one may lack some, which stay zero.
func TestDecodeMsgCompatible(t *testing.T) {
	body, err := msgpack.Marshal(map[string]any{
		"version":  2,
		"scenario": "s",
		"durable":  uint64(99),
		"future":   map[string]any{"nested": []any{1, "two", nil}},
		"zone":     "eu-1",
	})
	if err != nil {
		t.Fatal(err)
	}
	got, err := stream.DecodeMsg(stream.FrameWelcome, body)
	if err != nil {
		t.Fatal(err)
	}
	if want := (&stream.Welcome{Version: 2, Scenario: "s", Durable: 99}); *got.(*stream.Welcome) != *want {
		t.Fatalf("got %#v, want %#v", got, want)
	}
}

func TestDecodeMsgRejects(t *testing.T) {
	mp := func(v any) []byte {
		b, err := msgpack.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	ack := msgBody(t, stream.Ack{Received: 1 << 40})
	tests := []struct {
		name string
		t    stream.FrameType
		body []byte
		msg  string
	}{
		{name: "batch", t: stream.FrameBatch, body: ack, msg: "stream: a batch frame holds no message"},
		{name: "unknown type", t: 10, body: ack, msg: "stream: unknown frame type 10 holds no message"},
		{name: "empty", t: stream.FrameAck, msg: "stream: ack message: empty body"},
		{name: "nil", t: stream.FrameAck, body: []byte{0xc0}, msg: "stream: ack message: body starts with 0xc0, not a msgpack map"},
		{name: "array", t: stream.FrameAck, body: mp([]uint64{1, 2, 3}), msg: "stream: ack message: body starts with 0x93, not a msgpack map"},
		{name: "string", t: stream.FrameClose, body: mp("bye"), msg: "stream: close message: body starts with 0xa3"},
		{name: "trailing bytes", t: stream.FrameAck, body: append(ack, 0x01, 0x02), msg: "stream: ack message: 2 bytes after the map"},
		{name: "two maps", t: stream.FrameAck, body: append(ack, ack...), msg: "stream: ack message: " + fmt.Sprint(len(ack)) + " bytes after the map"},
		{name: "cut short", t: stream.FrameAck, body: ack[:len(ack)-1], msg: "stream: ack message: "},
		{name: "string for a number", t: stream.FrameHeartbeat, body: mp(map[string]any{"time": "now"}), msg: "stream: heartbeat message: msgpack: "},
		{name: "number for a string", t: stream.FrameHello, body: mp(map[string]any{"scenario": 5}), msg: "stream: hello message: msgpack: "},
		{name: "number key", t: stream.FrameWelcome, body: mp(map[int]any{1: 2}), msg: "stream: welcome message: msgpack: "},
		{name: "map of 16 with fewer entries", t: stream.FrameClose, body: []byte{0xde, 0x00, 0x05, 0xa6, 'r', 'e', 'a', 's', 'o', 'n', 0xa1, 'x'}, msg: "stream: close message: "},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := stream.DecodeMsg(tt.t, tt.body)
			if m != nil {
				t.Fatalf("message %#v with error %v", m, err)
			}
			wantKind(t, err, "corrupt")
			if !strings.HasPrefix(err.Error(), tt.msg) || !strings.HasSuffix(err.Error(), ": stream: corrupt frame") {
				t.Fatalf("error %q, want it to start with %q", err, tt.msg)
			}
		})
	}
}

// forged is a Message that claims the batch type.
type forged struct{}

func (forged) Type() stream.FrameType { return stream.FrameBatch }

func TestWriteMsgRejectsBatchType(t *testing.T) {
	var rec writeRecorder
	err := stream.NewFrameWriter(&rec).WriteMsg(forged{})
	if err == nil || !strings.Contains(err.Error(), "stream: stream_test.forged claims frame type batch, which carries no message") {
		t.Fatalf("error %v", err)
	}
	if len(rec.writes) != 0 {
		t.Fatal("wrote something")
	}
}
