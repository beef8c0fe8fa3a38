//go:build linux

package replay

import (
	"testing"

	"github.com/writecap/writecap/journal"
)

// BenchmarkApplyWrite4K applies 4 KiB writes to one file, cycling over 1 MiB:
// the steady state of a replica following a database's data file.
func BenchmarkApplyWrite4K(b *testing.B) {
	a := openT(b, b.TempDir(), Options{})
	r := journal.Record{Op: journal.OpWrite, Path: "data/table.db", Data: make([]byte, 4096)}
	mk := journal.Record{Seq: 1, Op: journal.OpMkdir, Path: "data", Mode: 0o755}
	if err := a.Apply(&mk); err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(r.Data)))
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		r.Seq = uint64(i + 2)
		r.Offset = int64(i%256) * 4096
		if err := a.Apply(&r); err != nil {
			b.Fatal(err)
		}
	}
}
