package journal_test

import (
	"testing"

	"github.com/writecap/writecap/journal"
)

// benchRecords is the records per batch in the benchmarks: an op is one
// batch, so allocs/op over benchRecords is the allocations per record.
const benchRecords = 64

var benchModes = []struct {
	name     string
	compress bool
}{
	{name: "lz4", compress: true},
	{name: "raw", compress: false},
}

func BenchmarkEncode(b *testing.B) {
	for _, bm := range benchModes {
		b.Run(bm.name, func(b *testing.B) {
			recs := writes(1, benchRecords)
			enc := journal.NewEncoder(journal.EncoderOptions{Compress: bm.compress})
			var buf []byte
			b.SetBytes(benchRecords * 4096)
			b.ReportAllocs()
			for b.Loop() {
				var err error
				if buf, err = enc.AppendBatch(buf[:0], recs); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(len(buf))/(benchRecords*4096), "batch/data")
		})
	}
}

func BenchmarkDecode(b *testing.B) {
	for _, bm := range benchModes {
		b.Run(bm.name, func(b *testing.B) {
			batch := encode(b, bm.compress, writes(1, benchRecords))
			var d journal.Decoder
			var recs []journal.Record
			b.SetBytes(benchRecords * 4096)
			b.ReportAllocs()
			for b.Loop() {
				var err error
				if recs, _, err = d.Decode(batch, recs[:0]); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkEncodeFresh is the master's case: each batch is a new slice,
// which the spool keeps.
func BenchmarkEncodeFresh(b *testing.B) {
	for _, bm := range benchModes {
		b.Run(bm.name, func(b *testing.B) {
			recs := writes(1, benchRecords)
			enc := journal.NewEncoder(journal.EncoderOptions{Compress: bm.compress})
			b.SetBytes(benchRecords * 4096)
			b.ReportAllocs()
			for b.Loop() {
				if _, err := enc.AppendBatch(nil, recs); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
