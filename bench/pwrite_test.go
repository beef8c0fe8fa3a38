package bench

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/writecap/writecap/capture"
	"github.com/writecap/writecap/internal/testenv"
	"github.com/writecap/writecap/journal"
)

const childEnv = "WRITECAP_BENCH_CHILD"

// TestMain doubles as the writer process: capture ignores its own process.
func TestMain(m *testing.M) {
	testenv.AsChild(childEnv, func(spec string) (string, error) {
		var (
			mode, path string
			n          int64
			d          time.Duration
			err        error
		)
		fmt.Sscanf(spec, "%s %d %s", &mode, &n, &path)
		switch mode {
		case "pwrite":
			d, err = PwriteLoop(path, int(n), 4096, 64<<20)
		case "seq":
			d, err = SeqWrite(path, n, 1<<20)
		default:
			err = fmt.Errorf("bench: unknown writer %q", mode)
		}
		return fmt.Sprintln(d.Nanoseconds()), err
	})
	os.Exit(m.Run())
}

// child runs a writer in another process and returns the time it took.
func child(b *testing.B, mode string, n int64, path string) time.Duration {
	b.Helper()
	out := testenv.Child(b, childEnv, fmt.Sprintf("%s %d %s", mode, n, path))
	ns, err := strconv.ParseInt(strings.TrimSpace(out), 10, 64)
	if err != nil {
		b.Fatalf("writer output %q: %v", out, err)
	}
	return time.Duration(ns)
}

type countSink struct{ writes, bytes int }

func (c *countSink) Write(recs []journal.Record) error {
	for i := range recs {
		if recs[i].Op == journal.OpWrite {
			c.writes++
			c.bytes += len(recs[i].Data)
		}
	}
	return nil
}

// BenchmarkPwrite4K compares a 4 KiB pwrite loop into the page cache
// without and with capture in one run: first with capture not loaded,
// alternating no programs at all with empty programs on the syscall
// tracepoints (the floor), then with capture loaded, alternating a file
// outside the protected root with one inside. Run with -benchtime=1x: each
// round is a fixed loop.
func BenchmarkPwrite4K(b *testing.B) {
	if os.Geteuid() != 0 {
		b.Skip("capture needs root")
	}
	const (
		rounds = 5
		n      = 300000
	)
	base := b.TempDir()
	plain, captured := filepath.Join(base, "plain"), filepath.Join(base, "protected")
	for _, d := range []string{plain, captured} {
		if err := os.Mkdir(d, 0o755); err != nil {
			b.Fatal(err)
		}
	}
	var off, empty, outside, on []time.Duration
	for r := 0; r < rounds; r++ {
		off = append(off, child(b, "pwrite", n, filepath.Join(plain, "f")))
		detach, err := EmptyHooks()
		if err != nil {
			b.Fatal(err)
		}
		empty = append(empty, child(b, "pwrite", n, filepath.Join(plain, "f")))
		if err := detach(); err != nil {
			b.Fatal(err)
		}
	}
	src, err := capture.New(capture.Config{Root: captured})
	if err != nil {
		b.Fatal(err)
	}
	defer src.Close()
	ctx, cancel := context.WithCancel(context.Background())
	sink := &countSink{}
	done := make(chan error, 1)
	go func() { done <- src.Run(ctx, sink) }()

	for r := 0; r < rounds; r++ {
		outside = append(outside, child(b, "pwrite", n, filepath.Join(plain, "f")))
		on = append(on, child(b, "pwrite", n, filepath.Join(captured, "f")))
	}
	cancel()
	if err := <-done; err != nil {
		b.Fatal(err)
	}
	st := src.Stats()
	medOff, medEmpty, medOut, medOn := median(off)/n, median(empty)/n, median(outside)/n, median(on)/n
	issued := rounds * n
	b.ReportMetric(float64(medOff.Nanoseconds()), "ns/op-off")
	b.ReportMetric(float64(medEmpty.Nanoseconds()), "ns/op-empty")
	b.ReportMetric(float64(medOn.Nanoseconds()), "ns/op-on")
	b.ReportMetric(float64(medOut.Nanoseconds()), "ns/op-outside")
	b.ReportMetric(float64(medOn)/float64(medOff), "ratio")
	b.ReportMetric(float64(medEmpty)/float64(medOff), "ratio-floor")
	b.ReportMetric(float64(st.WriteCalls), "captured")
	b.ReportMetric(float64(issued), "issued")
	b.ReportMetric(float64(st.Lost), "lost")
	b.Logf("pwrite 4KiB: not loaded %v/op, empty programs on the syscall tracepoints %v/op, loaded but outside the root %v/op, captured %v/op; ratio %.3f (captured/not loaded), floor %.3f (empty/not loaded), %.3f (captured/outside); captured %d of %d writes, %d lost in the ring, %d dirty repairs",
		medOff, medEmpty, medOut, medOn, float64(medOn)/float64(medOff), float64(medEmpty)/float64(medOff), float64(medOn)/float64(medOut), st.WriteCalls, issued, st.Lost, st.Dirty)
}

func median(d []time.Duration) time.Duration {
	s := append([]time.Duration(nil), d...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[len(s)/2]
}
