package journal_test

import (
	"bytes"
	"encoding/hex"
	"flag"
	"os"
	"strings"
	"testing"

	"github.com/writecap/writecap/journal"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden from the current encoder")

// goldenRecords are spelled out here, not built by helpers, so that only a
// change to the wire format can change the golden bytes.
func goldenRecords() []journal.Record {
	page := bytes.Repeat([]byte("tuple 0001 xmin 42 "), 20)
	const setAll = journal.SetMode | journal.SetOwner | journal.SetAtime | journal.SetMtime
	return []journal.Record{
		{Seq: 1 << 32, Op: journal.OpWrite, Path: "data/base/16384/2619", Offset: 8192, Data: page},
		{Seq: 1<<32 + 1, Op: journal.OpTruncate, Path: "data/base/16384/2619", Length: 16384},
		{Seq: 1<<32 + 2, Op: journal.OpFallocate, Path: "data/pg_wal/000000010000000000000001", Mode: 1, Offset: 0, Length: 16 << 20},
		{Seq: 1<<32 + 3, Op: journal.OpCreate, Path: "data/base/16384/new", Mode: 0o600},
		{Seq: 1<<32 + 4, Op: journal.OpMkdir, Path: "data/base/16385", Mode: 0o700},
		{Seq: 1<<32 + 5, Op: journal.OpRmdir, Path: "tmp/old"},
		{Seq: 1<<32 + 6, Op: journal.OpUnlink, Path: "tmp/old.lock"},
		{Seq: 1<<32 + 7, Op: journal.OpRename, Path: "data/pg_wal/xlogtemp.123", Path2: "data/pg_wal/000000010000000000000002", Flags: 1},
		{Seq: 1<<32 + 8, Op: journal.OpLink, Path: "data/a", Path2: "data/b"},
		{Seq: 1<<32 + 9, Op: journal.OpSymlink, Path: "data/pg_tblspc/16390", Path2: "/srv/tblspc"},
		{Seq: 1<<32 + 10, Op: journal.OpSetattr, Path: "data/postgresql.conf", Flags: setAll, Mode: 0o640, UID: 999, GID: 999, Atime: 1_700_000_000_000_000_001, Mtime: -1},
		{Seq: 1<<32 + 11, Op: journal.OpBarrier, Path: ""},
		{Seq: 1<<32 + 12, Op: journal.OpBookmark, Path: "before-upgrade"},
		{Seq: 1<<32 + 13, Op: journal.OpDirty, Path: "data/base/16384/2619", Offset: 4096, Length: 4096, Data: []byte{}},
		{Seq: 1<<32 + 14, Op: journal.OpWrite, Path: "data/base/16384/2619", Offset: 8192 + int64(len(page)), Data: page},
	}
}

func TestGolden(t *testing.T) {
	tests := []struct {
		name     string
		file     string
		compress bool
	}{
		{name: "lz4", file: "testdata/batch.golden", compress: true},
		{name: "uncompressed", file: "testdata/batch_raw.golden", compress: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := encode(t, tt.compress, goldenRecords())
			if *update {
				if err := os.WriteFile(tt.file, []byte(hexLines(got)), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			text, err := os.ReadFile(tt.file)
			if err != nil {
				t.Fatalf("%v (run go test ./journal -update to create it)", err)
			}
			want, err := hex.DecodeString(strings.Join(strings.Fields(string(text)), ""))
			if err != nil {
				t.Fatalf("%s: %v", tt.file, err)
			}
			// Batches already written must still decode, whatever the encoder does now.
			equalRecords(t, decodeAll(t, want), goldenRecords())
			if tt.compress != (want[offFlags] == 1) {
				t.Fatalf("%s: flags %#x, want lz4 %v", tt.file, want[offFlags], tt.compress)
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("encoding differs from %s: the wire format changed.\n got %s\nwant %s\n"+
					"If that is intended, bump the version and run go test ./journal -update.",
					tt.file, hexLines(got), hexLines(want))
			}
		})
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
