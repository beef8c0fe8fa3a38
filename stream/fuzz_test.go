package stream_test

import (
	"bytes"
	"errors"
	"io"
	"reflect"
	"slices"
	"testing"

	"github.com/writecap/writecap/stream"
)

func FuzzFrameReader(f *testing.F) {
	golden := encodeFrames(f, goldenFrames(f)...)
	f.Add(golden)
	f.Add(golden[:len(golden)-1])
	for _, fr := range goldenFrames(f) {
		f.Add(encodeFrames(f, fr))
	}
	f.Add([]byte("WF"))
	f.Fuzz(func(t *testing.T, b []byte) {
		checkFrames(t, b)
		// Mutations almost never keep the CRC right; resealing the first
		// frame lets the fuzzer reach the checks behind it and DecodeMsg.
		if len(b) >= hdrSize {
			checkFrames(t, reseal(slices.Clone(b)))
		}
	})
}

// checkFrames reads b to its end and checks that every frame read writes back
// to the same bytes, that control frames decode or fail as corrupt, and that
// the reader stops at the first error.
func checkFrames(t *testing.T, b []byte) {
	t.Helper()
	r := stream.NewFrameReader(bytes.NewReader(b))
	off := 0
	for {
		ft, body, err := r.ReadFrame()
		if err != nil {
			switch {
			case err == io.EOF:
				if off != len(b) {
					t.Fatalf("io.EOF at offset %d of %d", off, len(b))
				}
			case errors.Is(err, io.EOF):
				t.Fatalf("error %v wraps io.EOF", err)
			default:
				n := 0
				for _, is := range []bool{stream.IsCorrupt(err), stream.IsTruncated(err), stream.IsVersion(err)} {
					if is {
						n++
					}
				}
				if n != 1 {
					t.Fatalf("error %q is not exactly one of corrupt, truncated, version", err)
				}
			}
			if _, _, again := r.ReadFrame(); again != err {
				t.Fatalf("after error %v, ReadFrame returned %v", err, again)
			}
			return
		}
		n := hdrSize + len(body)
		if off+n > len(b) {
			t.Fatalf("frame at offset %d of %d bytes runs past the input's %d", off, n, len(b))
		}
		if again := encodeFrames(t, frame{ft, body}); !bytes.Equal(again, b[off:off+n]) {
			t.Fatalf("frame at offset %d writes back as % x, read from % x", off, again, b[off:off+n])
		}
		if ft != stream.FrameBatch {
			checkMsg(t, ft, body)
		}
		off += n
	}
}

// checkMsg decodes a control frame's body and, if that works, checks that
// the message writes and decodes back to itself.
func checkMsg(t *testing.T, ft stream.FrameType, body []byte) {
	t.Helper()
	m, err := stream.DecodeMsg(ft, body)
	if err != nil {
		if !stream.IsCorrupt(err) || stream.IsTruncated(err) || stream.IsVersion(err) {
			t.Fatalf("%s body: error %q is not only corrupt", ft, err)
		}
		return
	}
	if m.Type() != ft {
		t.Fatalf("%s body decoded to a %s message", ft, m.Type())
	}
	back, err := stream.DecodeMsg(ft, msgBody(t, m))
	if err != nil {
		t.Fatalf("decoding a re-encoded %s message: %v", ft, err)
	}
	if !reflect.DeepEqual(back, m) {
		t.Fatalf("%s message changed through re-encoding: %#v, then %#v", ft, m, back)
	}
}
