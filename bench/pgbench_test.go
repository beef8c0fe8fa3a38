package bench

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/writecap/writecap/internal/pgtest"
)

// BenchmarkPgbenchReplication runs pgbench -c 4 on a database under a
// protected tree without replication and with it, alternating, in one run,
// and reports the TPS ratio and the replica's lag (age of the oldest change
// captured and not yet applied, sampled every 50 ms). Run with
// -benchtime=1x; WRITECAP_PGBENCH_SECONDS sets each round's length
// (default 30).
func BenchmarkPgbenchReplication(b *testing.B) {
	if os.Geteuid() != 0 {
		b.Skip("capture needs root")
	}
	pg := pgtest.Find(b)
	seconds := "30"
	if s := os.Getenv("WRITECAP_PGBENCH_SECONDS"); s != "" {
		seconds = s
	}
	base := pg.SharedDir(b)
	src, sock := filepath.Join(base, "src"), filepath.Join(base, "sock")
	for _, d := range []string{src, sock} {
		if err := os.Mkdir(d, 0o755); err != nil {
			b.Fatal(err)
		}
	}
	pg.Own(b, src, sock)
	data := filepath.Join(src, "pgdata")
	pg.Run(b, "initdb", "-D", data, "--no-locale", "-E", "UTF8")
	const port = 54395
	pg.Start(b, data, sock, port)
	defer pg.Stop(b, data)
	pg.Run(b, "pgbench", "-h", sock, "-p", strconv.Itoa(port), "-i", "-s", "10", "postgres")
	bench := func() float64 {
		out := pg.Run(b, "pgbench", "-h", sock, "-p", strconv.Itoa(port), "-c", "4", "-T", seconds, "postgres")
		tps, ok := pgtest.TPS(out)
		if !ok {
			b.Fatalf("no tps in pgbench output:\n%s", out)
		}
		return tps
	}

	var off, on []float64
	var lags []time.Duration
	for range 2 {
		off = append(off, bench())
		p := startPair(b, base)
		waitCaughtUp(b, p) // the initial copy or the repair of the round without
		stop := make(chan struct{})
		sampled := make(chan []time.Duration)
		go func() {
			var l []time.Duration
			t := time.NewTicker(50 * time.Millisecond)
			defer t.Stop()
			for {
				select {
				case <-stop:
					sampled <- l
					return
				case <-t.C:
					if r := report(b, p.mmetrics); len(r.Scenarios[0].Peers) == 1 {
						l = append(l, time.Duration(r.Scenarios[0].Peers[0].LagSeconds*float64(time.Second)))
					}
				}
			}
		}()
		on = append(on, bench())
		close(stop)
		lags = append(lags, <-sampled...)
		p.close(b)
	}
	slices.Sort(lags)
	pct := func(q float64) time.Duration { return lags[min(len(lags)-1, int(q*float64(len(lags))))] }
	tpsOff, tpsOn := mean(off), mean(on)
	b.ReportMetric(tpsOff, "tps-off")
	b.ReportMetric(tpsOn, "tps-on")
	b.ReportMetric(tpsOn/tpsOff, "ratio")
	b.ReportMetric(pct(0.5).Seconds()*1000, "ms-lag-p50")
	b.ReportMetric(pct(0.99).Seconds()*1000, "ms-lag-p99")
	b.Logf("pgbench -c 4 -T %s, 2 alternating rounds: without replication %s tps, with %s tps, ratio %.3f; lag p50 %v p99 %v max %v over %d samples",
		seconds, fmt.Sprint(off), fmt.Sprint(on), tpsOn/tpsOff, pct(0.5), pct(0.99), lags[len(lags)-1], len(lags))
}

func mean(v []float64) float64 {
	s := 0.0
	for _, x := range v {
		s += x
	}
	return s / float64(len(v))
}
