package capture

import (
	"encoding/binary"
	"errors"
	"testing"
	"unsafe"

	"github.com/writecap/writecap/bpf"
)

func sample(t testing.TB, typ uint32, size int, dataLen uint32) []byte {
	t.Helper()
	b := make([]byte, size)
	h := (*bpf.CaptureEvHdr)(unsafe.Pointer(&b[0]))
	h.Seq, h.Type = 7, typ
	if typ == evWrite && size >= writeSize {
		w := (*bpf.CaptureEvWrite)(unsafe.Pointer(&b[0]))
		w.Len, w.Lo, w.Hi = dataLen, 10, 20
	}
	return b
}

func TestCheckEvent(t *testing.T) {
	tests := []struct {
		name string
		b    []byte
		ok   bool
	}{
		{"write with data", sample(t, evWrite, writeSize+16, 16), true},
		{"write without data", sample(t, evWrite, writeSize, 0), true},
		{"meta", sample(t, evRename, metaSize, 0), true},
		{"short header", make([]byte, hdrSize-1), false},
		{"short write", sample(t, evWrite, writeSize-8, 0)[:writeSize-8], false},
		{"data beyond sample", sample(t, evWrite, writeSize+8, 9), false},
		{"short meta", sample(t, evOpen, metaSize-1, 0), false},
		{"unknown type", sample(t, 99, metaSize, 0), false},
		{"zero type", sample(t, 0, metaSize, 0), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := checkEvent(tt.b)
			if tt.ok && err != nil {
				t.Fatalf("rejected a valid sample: %v", err)
			}
			if !tt.ok && !errors.Is(err, ErrBadEvent) {
				t.Fatalf("accepted a malformed sample (err %v)", err)
			}
		})
	}
	inverted := sample(t, evWrite, writeSize, 0)
	w := writeOf(inverted)
	w.Lo, w.Hi = 20, 10
	if err := checkEvent(inverted); !errors.Is(err, ErrBadEvent) {
		t.Fatalf("accepted an inverted range: %v", err)
	}
}

// FuzzCheckEvent: whatever the ring holds, checking never panics, and a
// sample that passes can be viewed without reading out of bounds.
func FuzzCheckEvent(f *testing.F) {
	f.Add(sample(f, evWrite, writeSize+4, 4))
	f.Add(sample(f, evMkdir, metaSize, 0))
	f.Add([]byte{1, 2, 3})
	f.Fuzz(func(t *testing.T, raw []byte) {
		// Ring samples are 8-byte aligned; so is a fresh slice.
		b := make([]byte, len(raw))
		copy(b, raw)
		if checkEvent(b) != nil {
			return
		}
		h := hdrOf(b)
		if h.Type == evWrite {
			d := writeData(b)
			_ = binary.LittleEndian.Uint64(b[:8]) + uint64(len(d))
			return
		}
		m := metaOf(b)
		_ = cstr(&m.Path1) + cstr(&m.Path2)
	})
}
