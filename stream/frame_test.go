package stream_test

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"runtime"
	"slices"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/writecap/writecap/stream"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden from the current writer")

// Header field offsets, restated rather than shared with the package so that
// the tests pin the wire format.
const (
	offVersion = 2
	offType    = 3
	offLength  = 4
	offCRC     = 8
	hdrSize    = 12
)

var le = binary.LittleEndian

// frame is one frame to write and expect back.
type frame struct {
	t    stream.FrameType
	body []byte
}

// encodeFrames writes frames with a FrameWriter and returns the bytes.
func encodeFrames(t testing.TB, frames ...frame) []byte {
	t.Helper()
	var buf bytes.Buffer
	w := stream.NewFrameWriter(&buf)
	for _, f := range frames {
		if err := w.WriteFrame(f.t, f.body); err != nil {
			t.Fatalf("WriteFrame(%s, %d bytes): %v", f.t, len(f.body), err)
		}
	}
	return buf.Bytes()
}

// msgBody is m's frame body as WriteMsg writes it.
func msgBody(t testing.TB, m stream.Message) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := stream.NewFrameWriter(&buf).WriteMsg(m); err != nil {
		t.Fatalf("WriteMsg(%#v): %v", m, err)
	}
	return buf.Bytes()[hdrSize:]
}

// readFrames reads r to its first error, returning every frame before it.
func readFrames(r *stream.FrameReader) ([]frame, error) {
	var got []frame
	for {
		t, body, err := r.ReadFrame()
		if err != nil {
			return got, err
		}
		got = append(got, frame{t, slices.Clone(body)}) // valid only until the next call
	}
}

func equalFrames(t testing.TB, got, want []frame) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("got %d frames, want %d", len(got), len(want))
	}
	for i := range want {
		if got[i].t != want[i].t || !bytes.Equal(got[i].body, want[i].body) {
			t.Fatalf("frame %d: got %s with %d bytes, want %s with %d bytes", i, got[i].t, len(got[i].body), want[i].t, len(want[i].body))
		}
	}
}

// reseal recomputes the CRC of the frame at the start of b, so that a test
// can reach the checks behind it.
func reseal(b []byte) []byte {
	body := b[hdrSize:]
	if n := int(le.Uint32(b[offLength:])); n < len(body) {
		body = body[:n]
	}
	tab := crc32.MakeTable(crc32.Castagnoli)
	le.PutUint32(b[offCRC:], crc32.Update(crc32.Update(0, tab, b[:offCRC]), tab, body))
	return b
}

// allocated reports how many bytes f allocates.
func allocated(f func()) uint64 {
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

// wantKind fails unless err wraps exactly the sentinel kind names.
func wantKind(t testing.TB, err error, kind string) {
	t.Helper()
	kinds := map[string]bool{
		"corrupt":   stream.IsCorrupt(err),
		"truncated": stream.IsTruncated(err),
		"version":   stream.IsVersion(err),
	}
	for k, is := range kinds {
		if is != (k == kind) {
			t.Fatalf("error %v: %s is %v, want only %s", err, k, is, kind)
		}
	}
}

func TestFrameTypeString(t *testing.T) {
	want := map[stream.FrameType]string{
		0: "FrameType(0)", stream.FrameHello: "hello", stream.FrameWelcome: "welcome", stream.FrameBatch: "batch",
		stream.FrameAck: "ack", stream.FrameHeartbeat: "heartbeat", stream.FrameClose: "close", stream.FrameReset: "reset",
		stream.FrameManifestRequest: "manifest request", stream.FrameManifestPart: "manifest part", 10: "FrameType(10)", 255: "FrameType(255)",
	}
	for ft, s := range want {
		if ft.String() != s {
			t.Errorf("FrameType(%d).String() = %q, want %q", uint8(ft), ft.String(), s)
		}
	}
}

// goldenFrames are spelled out here so that only a change to the wire format
// can change the golden bytes. The batch body is opaque to this package, so
// it is fixed bytes rather than a journal batch, whose own format has its own
// golden file.
func goldenFrames(t testing.TB) []frame {
	return []frame{
		{stream.FrameHello, msgBody(t, stream.Hello{Version: 1, Scenario: "pg-main", Master: "db1.example.com",
			Replica: "db2.example.com", Epoch: 1 << 40, Root: "/srv/pgdata", Compress: true})},
		{stream.FrameWelcome, msgBody(t, stream.Welcome{Version: 1, Scenario: "pg-main", Replica: "db2.example.com",
			Epoch: 1 << 40, Received: 1<<32 + 20, Applied: 1<<32 + 10, Durable: 1 << 32})},
		{stream.FrameBatch, bytes.Repeat([]byte("WCJB batch bytes "), 4)},
		{stream.FrameAck, msgBody(t, stream.Ack{Received: 1<<32 + 30, Applied: 1<<32 + 20, Durable: 1<<32 + 20, Epoch: 1 << 40})},
		{stream.FrameHeartbeat, msgBody(t, stream.Heartbeat{Time: 1_700_000_000_123_456_789})},
		{stream.FrameHeartbeat, msgBody(t, stream.Heartbeat{Time: -1})},
		{stream.FrameBatch, nil},
		{stream.FrameClose, msgBody(t, stream.Close{Reason: "replica: scenario \"pg-other\" not served"})},
		{stream.FrameReset, msgBody(t, stream.Reset{Epoch: 1<<40 + 1, From: 1<<32 + 21})},
		{stream.FrameReset, msgBody(t, stream.Reset{Epoch: 1<<40 + 2, From: 1, Keep: true})},
		{stream.FrameManifestRequest, msgBody(t, stream.ManifestRequest{BlockSize: 65536})},
		{stream.FrameManifestRequest, msgBody(t, stream.ManifestRequest{BlockSize: 4096, Paths: []string{"base/16384/2619", "pg_wal"}})},
		{stream.FrameManifestPart, msgBody(t, stream.ManifestPart{Data: []byte("WCMF part bytes"), Last: true})},
	}
}

func TestGolden(t *testing.T) {
	const file = "testdata/frames.golden"
	frames := goldenFrames(t)
	got := encodeFrames(t, frames...)
	if *update {
		if err := os.WriteFile(file, []byte(hexLines(got)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	text, err := os.ReadFile(file)
	if err != nil {
		t.Fatalf("%v (run go test ./stream -update to create it)", err)
	}
	want, err := hex.DecodeString(strings.Join(strings.Fields(string(text)), ""))
	if err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	// Frames already written must still read, whatever the writer does now.
	read, err := readFrames(stream.NewFrameReader(bytes.NewReader(want)))
	if err != io.EOF {
		t.Fatalf("reading %s: %v", file, err)
	}
	equalFrames(t, read, frames)
	if !bytes.Equal(got, want) {
		t.Fatalf("encoding differs from %s: the wire format changed.\n got %s\nwant %s\n"+
			"If that is intended, bump the version and run go test ./stream -update.",
			file, hexLines(got), hexLines(want))
	}
}

// hexLines is b in hex, 32 bytes a line, so that diffs show where it changed.
func hexLines(b []byte) string {
	var s strings.Builder
	for len(b) > 0 {
		n := min(len(b), 32)
		s.WriteString(hex.EncodeToString(b[:n]))
		s.WriteByte('\n')
		b = b[n:]
	}
	return s.String()
}

func TestFrameLayout(t *testing.T) {
	body := []byte("hello, replica")
	b := encodeFrames(t, frame{stream.FrameBatch, body})
	want := []byte{'W', 'F', 2, 3, byte(len(body)), 0, 0, 0}
	if !bytes.Equal(b[:offCRC], want) {
		t.Fatalf("header % x, want % x", b[:offCRC], want)
	}
	sum := crc32.Checksum(append(slices.Clone(b[:offCRC]), body...), crc32.MakeTable(crc32.Castagnoli))
	if got := le.Uint32(b[offCRC:]); got != sum {
		t.Fatalf("crc %#08x, want %#08x", got, sum)
	}
	if !bytes.Equal(b[hdrSize:], body) {
		t.Fatalf("body % x", b[hdrSize:])
	}
}

func TestRoundTrip(t *testing.T) {
	big := bytes.Repeat([]byte("0123456789abcdef"), 100_000) // beyond the copy limit
	tests := []struct {
		name   string
		frames []frame
	}{
		{name: "hello", frames: []frame{{stream.FrameHello, msgBody(t, stream.Hello{Version: 1, Scenario: "s", Epoch: 3})}}},
		{name: "welcome", frames: []frame{{stream.FrameWelcome, msgBody(t, stream.Welcome{Version: 1, Durable: 9})}}},
		{name: "batch", frames: []frame{{stream.FrameBatch, []byte("batch bytes")}}},
		{name: "ack", frames: []frame{{stream.FrameAck, msgBody(t, stream.Ack{Received: 3, Applied: 2, Durable: 1})}}},
		{name: "heartbeat", frames: []frame{{stream.FrameHeartbeat, msgBody(t, stream.Heartbeat{Time: 42})}}},
		{name: "close", frames: []frame{{stream.FrameClose, msgBody(t, stream.Close{Reason: "bye"})}}},
		{name: "empty body", frames: []frame{{stream.FrameBatch, nil}}},
		{name: "large body", frames: []frame{{stream.FrameBatch, big}}},
		{name: "one of each", frames: goldenFrames(t)},
		{name: "large between small", frames: []frame{{stream.FrameBatch, []byte("a")}, {stream.FrameBatch, big}, {stream.FrameBatch, []byte("b")}}},
	}
	readers := []struct {
		name string
		wrap func(io.Reader) io.Reader
	}{
		{name: "whole", wrap: func(r io.Reader) io.Reader { return r }},
		{name: "one byte at a time", wrap: iotest.OneByteReader},
		{name: "reads that also return EOF", wrap: iotest.DataErrReader},
		{name: "half reads", wrap: iotest.HalfReader},
	}
	for _, tt := range tests {
		b := encodeFrames(t, tt.frames...)
		for _, rd := range readers {
			t.Run(tt.name+"/"+rd.name, func(t *testing.T) {
				got, err := readFrames(stream.NewFrameReader(rd.wrap(bytes.NewReader(b))))
				if err != io.EOF {
					t.Fatalf("error %v, want io.EOF", err)
				}
				equalFrames(t, got, tt.frames)
			})
		}
	}
}

func TestLargestBody(t *testing.T) {
	if testing.Short() {
		t.Skip("writes and reads a 64 MiB frame")
	}
	body := make([]byte, stream.MaxFrameBody)
	body[len(body)-1] = 1
	b := encodeFrames(t, frame{stream.FrameBatch, body})
	got, err := readFrames(stream.NewFrameReader(bytes.NewReader(b)))
	if err != io.EOF {
		t.Fatalf("error %v, want io.EOF", err)
	}
	equalFrames(t, got, []frame{{stream.FrameBatch, body}})
}

func TestReadFrameRejects(t *testing.T) {
	good := encodeFrames(t, frame{stream.FrameHeartbeat, msgBody(t, stream.Heartbeat{Time: 1})})
	next := encodeFrames(t, frame{stream.FrameBatch, []byte("some batch bytes")})
	edit := func(f func(b []byte)) []byte {
		b := slices.Clone(next)
		f(b)
		return b
	}
	resealed := func(f func(b []byte)) []byte { return reseal(edit(f)) }
	off := len(good) // the bad frame follows a good one, so the offset shows
	errDisk := errors.New("disk on fire")

	tests := []struct {
		name    string
		bad     []byte    // follows good
		tail    io.Reader // follows good and bad
		kind    string
		msg     string // after "stream: frame at offset N: "
		wrapped error
	}{
		{name: "bad magic", bad: resealed(func(b []byte) { b[1] = 'X' }), kind: "corrupt", msg: `bad magic "WX", want "WF"`},
		{name: "garbage", bad: []byte("junk after the frame"), kind: "corrupt", msg: `bad magic "ju", want "WF"`},
		{name: "short garbage", bad: []byte("X"), kind: "corrupt", msg: `bad magic "X", want "WF"`},
		{name: "version 3", bad: resealed(func(b []byte) { b[offVersion] = 3 }), kind: "version", msg: "protocol version 3, want 2"},
		{name: "version 1", bad: resealed(func(b []byte) { b[offVersion] = 1 }), kind: "version", msg: "protocol version 1, want 2"},
		{name: "version 0 with bad crc", bad: edit(func(b []byte) { b[offVersion] = 0 }), kind: "version", msg: "protocol version 0, want 2"},
		{name: "flipped body byte", bad: edit(func(b []byte) { b[hdrSize+3] ^= 0x10 }), kind: "corrupt",
			msg: fmt.Sprintf("crc mismatch (stored %#08x, computed ", le.Uint32(next[offCRC:]))},
		{name: "flipped crc", bad: edit(func(b []byte) { b[offCRC] ^= 1 }), kind: "corrupt", msg: "crc mismatch (stored 0x"},
		{name: "flipped type", bad: edit(func(b []byte) { b[offType] = byte(stream.FrameAck) }), kind: "corrupt", msg: "crc mismatch"},
		{name: "type 0", bad: resealed(func(b []byte) { b[offType] = 0 }), kind: "corrupt", msg: "unknown frame type 0"},
		{name: "type 10", bad: resealed(func(b []byte) { b[offType] = 10 }), kind: "corrupt", msg: "unknown frame type 10"},
		{name: "body over max", bad: resealed(func(b []byte) { le.PutUint32(b[offLength:], stream.MaxFrameBody+1) }), kind: "corrupt",
			msg: fmt.Sprintf("batch body length %d exceeds %d", stream.MaxFrameBody+1, stream.MaxFrameBody)},
		{name: "body length max uint32", bad: resealed(func(b []byte) { le.PutUint32(b[offLength:], 1<<32-1) }), kind: "corrupt",
			msg: "batch body length 4294967295 exceeds"},
		{name: "truncated header", bad: next[:7], kind: "truncated", msg: "header has 7 of 12 bytes"},
		{name: "one byte of header", bad: next[:1], kind: "truncated", msg: "header has 1 of 12 bytes"},
		{name: "truncated body", bad: next[:len(next)-1], kind: "truncated", msg: fmt.Sprintf("body has %d of %d bytes", len(next)-hdrSize-1, len(next)-hdrSize)},
		{name: "header only", bad: next[:hdrSize], kind: "truncated", msg: fmt.Sprintf("body has 0 of %d bytes", len(next)-hdrSize)},
		{name: "read error in header", bad: next[:5], tail: iotest.ErrReader(errDisk), msg: "reading header: disk on fire", wrapped: errDisk},
		{name: "read error in body", bad: next[:hdrSize+2], tail: iotest.ErrReader(errDisk), msg: "reading body: disk on fire", wrapped: errDisk},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src := io.MultiReader(bytes.NewReader(good), bytes.NewReader(tt.bad))
			if tt.tail != nil {
				src = io.MultiReader(src, tt.tail)
			}
			r := stream.NewFrameReader(src)
			got, err := readFrames(r)
			if len(got) != 1 {
				t.Fatalf("read %d frames before the error, want 1", len(got))
			}
			if tt.wrapped != nil {
				if !errors.Is(err, tt.wrapped) {
					t.Fatalf("error %v, want it to wrap %v", err, tt.wrapped)
				}
				wantKind(t, err, "")
			} else {
				wantKind(t, err, tt.kind)
			}
			prefix := fmt.Sprintf("stream: frame at offset %d: %s", off, tt.msg)
			if !strings.HasPrefix(err.Error(), prefix) {
				t.Fatalf("error %q, want it to start with %q", err, prefix)
			}
			if _, _, again := r.ReadFrame(); again != err {
				t.Fatalf("after error %v, ReadFrame returned %v", err, again)
			}
		})
	}
}

func TestReadFrameErrorText(t *testing.T) {
	b := encodeFrames(t, frame{stream.FrameBatch, []byte("x")}, frame{stream.FrameBatch, []byte("yz")})
	stored := le.Uint32(b[13+offCRC:])
	b[13+hdrSize] = 'Y'
	computed := crc32.Checksum(slices.Concat(b[13:13+offCRC], b[13+hdrSize:]), crc32.MakeTable(crc32.Castagnoli))
	_, err := readFrames(stream.NewFrameReader(bytes.NewReader(b)))
	want := fmt.Sprintf("stream: frame at offset 13: crc mismatch (stored %#08x, computed %#08x): stream: corrupt frame", stored, computed)
	if err == nil || err.Error() != want {
		t.Fatalf("error %q, want %q", err, want)
	}
}

func TestReadFrameTruncatedEverywhere(t *testing.T) {
	f1 := encodeFrames(t, frame{stream.FrameAck, msgBody(t, stream.Ack{Received: 1})})
	b := slices.Concat(f1, encodeFrames(t, frame{stream.FrameBatch, []byte("0123456789")}))
	for i := range len(b) + 1 {
		got, err := readFrames(stream.NewFrameReader(bytes.NewReader(b[:i])))
		switch i {
		case 0, len(f1), len(b):
			if err != io.EOF {
				t.Fatalf("%d of %d bytes: error %v, want io.EOF", i, len(b), err)
			}
		default:
			wantKind(t, err, "truncated")
		}
		want := 0
		switch {
		case i == len(b):
			want = 2
		case i >= len(f1):
			want = 1
		}
		if len(got) != want {
			t.Fatalf("%d of %d bytes: %d frames, want %d", i, len(b), len(got), want)
		}
	}
}

// TestReadFrameHostileLength checks that a header claiming a huge body costs
// no more memory than the bytes that arrive.
func TestReadFrameHostileLength(t *testing.T) {
	tests := []struct {
		name   string
		length uint32
		kind   string
	}{
		{name: "largest allowed, few bytes follow", length: stream.MaxFrameBody, kind: "truncated"},
		{name: "over the limit", length: stream.MaxFrameBody + 1, kind: "corrupt"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := encodeFrames(t, frame{stream.FrameBatch, bytes.Repeat([]byte("x"), 1000)})
			le.PutUint32(b[offLength:], tt.length)
			r := stream.NewFrameReader(bytes.NewReader(reseal(b)))
			var err error
			n := allocated(func() { _, _, err = r.ReadFrame() })
			wantKind(t, err, tt.kind)
			if n > 1<<20 {
				t.Fatalf("allocated %d bytes for a %d-byte stream claiming %d", n, len(b), tt.length)
			}
		})
	}
}

// TestReaderReusesBuffer: the body is valid until the next call because the
// reader keeps one buffer, so steady traffic does not allocate per frame.
func TestReaderReusesBuffer(t *testing.T) {
	one := encodeFrames(t, frame{stream.FrameBatch, bytes.Repeat([]byte("b"), 4096)})
	b := bytes.Repeat(one, 200)
	r := stream.NewFrameReader(bytes.NewReader(b))
	if _, _, err := r.ReadFrame(); err != nil {
		t.Fatal(err)
	}
	allocs := testing.AllocsPerRun(100, func() {
		if _, _, err := r.ReadFrame(); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Fatalf("%v allocations per frame", allocs)
	}
}

// writeRecorder records every Write call.
type writeRecorder struct {
	writes [][]byte
	err    error
}

func (w *writeRecorder) Write(p []byte) (int, error) {
	if w.err != nil {
		return 0, w.err
	}
	w.writes = append(w.writes, p)
	return len(p), nil
}

func TestWriteFrameWrites(t *testing.T) {
	tests := []struct {
		name   string
		size   int
		writes int // Write calls on a writer without writev
		copied bool
	}{
		{name: "empty", size: 0, writes: 1, copied: true},
		{name: "small", size: 100, writes: 1, copied: true},
		{name: "at the copy limit", size: 16 << 10, writes: 1, copied: true},
		{name: "over the copy limit", size: 16<<10 + 1, writes: 2, copied: false},
		{name: "large", size: 4 << 20, writes: 2, copied: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			body := bytes.Repeat([]byte("z"), tt.size)
			var rec writeRecorder
			if err := stream.NewFrameWriter(&rec).WriteFrame(stream.FrameBatch, body); err != nil {
				t.Fatal(err)
			}
			if len(rec.writes) != tt.writes {
				t.Fatalf("%d Write calls, want %d", len(rec.writes), tt.writes)
			}
			if !bytes.Equal(slices.Concat(rec.writes...), encodeFrames(t, frame{stream.FrameBatch, body})) {
				t.Fatal("bytes written differ")
			}
			if !tt.copied && &rec.writes[1][0] != &body[0] {
				t.Fatal("large body was copied")
			}
		})
	}
}

func TestWriteFrameRejects(t *testing.T) {
	tests := []struct {
		name string
		t    stream.FrameType
		body []byte
		msg  string
	}{
		{name: "type 0", t: 0, msg: "stream: writing a frame of unknown type 0"},
		{name: "type 10", t: 10, msg: "stream: writing a frame of unknown type 10"},
		{name: "body over max", t: stream.FrameBatch, body: make([]byte, stream.MaxFrameBody+1),
			msg: fmt.Sprintf("stream: writing a batch frame: body of %d bytes exceeds %d", stream.MaxFrameBody+1, stream.MaxFrameBody)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var rec writeRecorder
			w := stream.NewFrameWriter(&rec)
			if err := w.WriteFrame(tt.t, tt.body); err == nil || err.Error() != tt.msg {
				t.Fatalf("error %v, want %q", err, tt.msg)
			}
			if len(rec.writes) != 0 {
				t.Fatal("wrote something")
			}
			// A rejected frame writes nothing, so the stream is still good.
			if err := w.WriteFrame(stream.FrameBatch, []byte("x")); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestWriteFrameErrorSticks(t *testing.T) {
	errNet := errors.New("connection reset")
	rec := writeRecorder{err: errNet}
	w := stream.NewFrameWriter(&rec)
	err := w.WriteFrame(stream.FrameBatch, []byte("x"))
	if !errors.Is(err, errNet) || err.Error() != "stream: writing a batch frame: connection reset" {
		t.Fatalf("error %v", err)
	}
	rec.err = nil
	if again := w.WriteMsg(stream.Ack{}); again != err {
		t.Fatalf("after error %v, WriteMsg returned %v", err, again)
	}
	if len(rec.writes) != 0 {
		t.Fatal("wrote after an error")
	}
}
