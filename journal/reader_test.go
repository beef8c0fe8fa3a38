package journal_test

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/writecap/writecap/journal"
)

// readAll reads r to its first error, returning every record before it.
func readAll(t testing.TB, r *journal.Reader) ([]journal.Record, error) {
	t.Helper()
	var all, recs []journal.Record
	for {
		var err error
		if recs, err = r.Next(recs[:0]); err != nil {
			return all, err
		}
		for _, rec := range recs {
			rec.Data = slices.Clone(rec.Data) // valid only until the next call
			all = append(all, rec)
		}
	}
}

func TestReader(t *testing.T) {
	b1, b2, b3 := encode(t, true, allOps(1)), encode(t, false, writes(15, 10)), encode(t, true, writes(25, 40))
	all := slices.Concat(allOps(1), writes(15, 10), writes(25, 40))
	stream := slices.Concat(b1, b2, b3)
	bad := slices.Clone(b2)
	bad[hdrSize+7] ^= 1
	big := encode(t, false, writes(15, 300)) // grows the Reader's buffer in several steps
	errDisk := errors.New("disk on fire")

	tests := []struct {
		name    string
		stream  io.Reader
		want    []journal.Record
		kind    string // "" for a clean io.EOF
		msg     string
		wrapped error
	}{
		{name: "empty", stream: bytes.NewReader(nil)},
		{name: "three batches", stream: bytes.NewReader(stream), want: all},
		{name: "large batch", stream: bytes.NewReader(slices.Concat(b1, big)), want: slices.Concat(allOps(1), writes(15, 300))},
		{name: "one byte at a time", stream: iotest.OneByteReader(bytes.NewReader(stream)), want: all},
		{name: "reads that also return EOF", stream: iotest.DataErrReader(bytes.NewReader(stream)), want: all},
		{name: "truncated header at the tail", stream: bytes.NewReader(slices.Concat(b1, b2[:20])), want: allOps(1), kind: "truncated",
			msg: fmt.Sprintf("journal: batch at offset %d: header has 20 of 32 bytes", len(b1))},
		{name: "truncated payload at the tail", stream: bytes.NewReader(slices.Concat(b1, b2[:len(b2)-1])), want: allOps(1), kind: "truncated",
			msg: fmt.Sprintf("journal: batch at offset %d: payload has %d of %d bytes", len(b1), len(b2)-hdrSize-1, len(b2)-hdrSize)},
		{name: "garbage at the tail", stream: bytes.NewReader(slices.Concat(b1, []byte("junk"))), want: allOps(1), kind: "corrupt",
			msg: fmt.Sprintf("journal: batch at offset %d: bad magic \"junk\"", len(b1))},
		{name: "corrupt middle batch", stream: bytes.NewReader(slices.Concat(b1, bad, b3)), want: allOps(1), kind: "corrupt",
			msg: fmt.Sprintf("journal: batch at offset %d: crc mismatch", len(b1))},
		{name: "read error", stream: io.MultiReader(bytes.NewReader(b1), iotest.ErrReader(errDisk)), want: allOps(1),
			msg: fmt.Sprintf("journal: batch at offset %d: reading header: disk on fire", len(b1)), wrapped: errDisk},
		{name: "read error in payload", stream: io.MultiReader(bytes.NewReader(b2[:40]), iotest.ErrReader(errDisk)),
			msg: "journal: batch at offset 0: reading payload: disk on fire", wrapped: errDisk},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := journal.NewReader(tt.stream)
			got, err := readAll(t, r)
			equalRecords(t, got, tt.want)
			switch {
			case tt.kind != "":
				wantKind(t, err, tt.kind)
			case tt.wrapped != nil:
				if !errors.Is(err, tt.wrapped) {
					t.Fatalf("error %v, want it to wrap %v", err, tt.wrapped)
				}
			case err != io.EOF:
				t.Fatalf("error %v, want io.EOF", err)
			}
			if !strings.HasPrefix(err.Error(), tt.msg) {
				t.Fatalf("error %q, want it to start with %q", err, tt.msg)
			}
			if _, again := r.Next(nil); again != err {
				t.Fatalf("after error %v, Next returned %v", err, again)
			}
		})
	}
}

func TestReaderTruncatedEverywhere(t *testing.T) {
	b1, b2 := encode(t, true, allOps(1)[:2]), encode(t, false, allOps(3)[:2])
	stream := slices.Concat(b1, b2)
	for i := range len(stream) + 1 {
		got, err := readAll(t, journal.NewReader(bytes.NewReader(stream[:i])))
		switch {
		case i == 0 || i == len(b1) || i == len(stream):
			if err != io.EOF {
				t.Fatalf("%d of %d bytes: error %v, want io.EOF", i, len(stream), err)
			}
		case !journal.IsTruncated(err):
			t.Fatalf("%d of %d bytes: error %v, want ErrTruncated", i, len(stream), err)
		}
		want := 0
		switch {
		case i == len(stream):
			want = 4
		case i >= len(b1):
			want = 2
		}
		if len(got) != want {
			t.Fatalf("%d of %d bytes: %d records, want %d", i, len(stream), len(got), want)
		}
	}
}

func TestReaderHostileLength(t *testing.T) {
	b := encode(t, false, allOps(1)[:1])
	le.PutUint32(b[offPayloadLen:], journal.MaxPayload)
	le.PutUint32(b[offRawLen:], journal.MaxPayload)
	r := journal.NewReader(bytes.NewReader(reseal(b)))
	var err error
	n := allocated(func() { _, err = r.Next(nil) })
	if !journal.IsTruncated(err) {
		t.Fatalf("error %v, want ErrTruncated", err)
	}
	if n > 1<<20 {
		t.Fatalf("allocated %d bytes for a %d-byte stream claiming %d", n, len(b), journal.MaxPayload)
	}
	t.Logf("allocated %d bytes: %v", n, err)
}
