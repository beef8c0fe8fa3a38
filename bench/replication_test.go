package bench

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/writecap/writecap/certs"
	"github.com/writecap/writecap/master"
	"github.com/writecap/writecap/monitor"
	"github.com/writecap/writecap/replica"
	"github.com/writecap/writecap/stream"
)

// pair runs a replica and a master in this process over loopback TLS. The
// writers are child processes: capture ignores the agent's own I/O.
type pair struct {
	src, dst                string
	mmetrics, rmetrics      string
	stopMaster, stopReplica context.CancelFunc
	masterDone, replicaDone chan error
}

func freeAddr(b *testing.B) string {
	b.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func startPair(b *testing.B, base string, opts ...func(*master.Config)) *pair {
	b.Helper()
	p := &pair{
		src: filepath.Join(base, "src"), dst: filepath.Join(base, "dst"),
		mmetrics: freeAddr(b), rmetrics: freeAddr(b),
		masterDone: make(chan error, 1), replicaDone: make(chan error, 1),
	}
	if err := os.MkdirAll(p.src, 0o755); err != nil {
		b.Fatal(err)
	}
	dir := filepath.Join(base, "certs")
	if _, err := certs.Create(certs.Options{Dir: dir, Nodes: []string{"master", "replica"}, Days: 1, Force: true}); err != nil {
		b.Fatal(err)
	}
	files := func(node string) stream.TLSFiles {
		return stream.TLSFiles{CA: filepath.Join(dir, "ca.crt"), Cert: filepath.Join(dir, node+".crt"), Key: filepath.Join(dir, node+".key")}
	}
	stc, err := stream.ServerConfig(files("replica"))
	if err != nil {
		b.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	rctx, rcancel := context.WithCancel(context.Background())
	mctx, mcancel := context.WithCancel(context.Background())
	p.stopReplica, p.stopMaster = rcancel, mcancel
	listening := make(chan net.Addr, 1)
	go func() {
		p.replicaDone <- replica.Run(rctx, replica.Config{
			Listen: "127.0.0.1:0", Name: "replica", TLS: stc, Metrics: p.rmetrics, Logger: log,
			Scenarios: []replica.Scenario{{ID: "bench", Root: p.dst, State: filepath.Join(base, "rstate")}},
			Ready:     func(a net.Addr) { listening <- a },
		})
	}()
	var addr net.Addr
	select {
	case addr = <-listening:
	case err := <-p.replicaDone:
		b.Fatal(err)
	}
	ready := make(chan struct{})
	mc := master.Config{
		Scenario: "bench", Name: "master", Source: p.src, State: filepath.Join(base, "mstate"),
		Replicas: []master.Replica{{Addr: addr.String(), Name: "replica"}},
		TLS:      func(name string) (*tls.Config, error) { return stream.ClientConfig(files("master"), name) },
		Compress: true, Metrics: p.mmetrics, Logger: log,
		Ready: func() { close(ready) },
	}
	for _, o := range opts {
		o(&mc)
	}
	go func() { p.masterDone <- master.Run(mctx, mc) }()
	select {
	case <-ready:
	case err := <-p.masterDone:
		b.Fatal(err)
	}
	return p
}

// close stops the master (which drains) and then the replica.
func (p *pair) close(b *testing.B) {
	b.Helper()
	p.stopMaster()
	err := <-p.masterDone
	p.stopReplica()
	if err := errors.Join(err, <-p.replicaDone); err != nil {
		b.Fatal(err)
	}
}

func report(b *testing.B, addr string) *monitor.Report {
	b.Helper()
	r, err := monitor.Fetch(context.Background(), addr)
	if err != nil {
		b.Fatal(err)
	}
	return r
}

// caughtUp reports whether the replica has applied everything the master
// has captured so far.
func (p *pair) caughtUp(b *testing.B) bool {
	b.Helper()
	m := report(b, p.mmetrics).Scenarios[0]
	return m.Captured > 0 && len(m.Peers) == 1 && m.Peers[0].Applied >= m.Captured
}

func benchBytes() int64 {
	if s := os.Getenv("WRITECAP_BENCH_BYTES"); s != "" {
		if n, err := strconv.ParseInt(s, 10, 64); err == nil {
			return n
		}
	}
	return 2 << 30
}

// BenchmarkReplicationThroughput writes a file sequentially in 1 MiB blocks
// without replication and then with it, in one run, and reports the ratio
// of the writer's rates and how long after the write's end the replica held
// the whole file. Run with -benchtime=1x.
func BenchmarkReplicationThroughput(b *testing.B) {
	if os.Geteuid() != 0 {
		b.Skip("capture needs root")
	}
	const rounds = 3
	size := benchBytes()
	base := b.TempDir()
	plain := filepath.Join(base, "plain")
	if err := os.Mkdir(plain, 0o755); err != nil {
		b.Fatal(err)
	}
	// The initial copy has something to carry, so its end can be seen.
	if err := os.MkdirAll(filepath.Join(base, "src"), 0o755); err != nil {
		b.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(base, "src", "before"), []byte("x"), 0o644); err != nil {
		b.Fatal(err)
	}
	p := startPair(b, base)
	waitCaughtUp(b, p)
	// Rounds alternate so that both sides see the same page cache and
	// machine load; each file is removed before the next round.
	var off, on, complete []time.Duration
	for r := range rounds {
		off = append(off, child(b, "seq", size, filepath.Join(plain, "f")))
		os.Remove(filepath.Join(plain, "f"))

		name := "f" + strconv.Itoa(r)
		on = append(on, child(b, "seq", size, filepath.Join(p.src, name)))
		end := time.Now()
		// Replay is in order: once the marker is there, so is every write
		// before it, except repairs of kernel losses found later;
		// caughtUp covers those.
		marker := "marker" + strconv.Itoa(r)
		if out, err := exec.Command("touch", filepath.Join(p.src, marker)).CombinedOutput(); err != nil {
			b.Fatalf("touch: %v %s", err, out)
		}
		for {
			if _, err := os.Stat(filepath.Join(p.dst, marker)); err == nil && p.caughtUp(b) {
				break
			}
			time.Sleep(5 * time.Millisecond)
		}
		complete = append(complete, time.Since(end))
		same, err := sameFile(filepath.Join(p.src, name), filepath.Join(p.dst, name))
		if err != nil {
			b.Fatal(err)
		}
		if !same {
			b.Fatalf("round %d: the replica's copy differs from the master's file", r)
		}
		if out, err := exec.Command("rm", filepath.Join(p.src, name)).CombinedOutput(); err != nil {
			b.Fatalf("rm: %v %s", err, out)
		}
		waitCaughtUp(b, p)
	}
	m := report(b, p.mmetrics).Scenarios[0]
	p.close(b)
	rateOff := float64(size) / median(off).Seconds() / (1 << 20)
	rateOn := float64(size) / median(on).Seconds() / (1 << 20)
	b.ReportMetric(rateOff, "MiB/s-off")
	b.ReportMetric(rateOn, "MiB/s-on")
	b.ReportMetric(rateOn/rateOff, "ratio")
	b.ReportMetric(median(complete).Seconds(), "s-to-replica")
	b.Logf("sequential 1 MiB writes of %d MiB, median of %d alternating rounds: without replication %.0f MiB/s, with %.0f MiB/s, ratio %.3f; replica complete %.2fs after the write ended (rounds: off %v, on %v, complete %v); master repairs so far: see metrics; last seq %d",
		size>>20, rounds, rateOff, rateOn, rateOn/rateOff, median(complete).Seconds(), off, on, complete, m.Captured)
}

func waitCaughtUp(b *testing.B, p *pair) {
	b.Helper()
	for !p.caughtUp(b) {
		time.Sleep(10 * time.Millisecond)
	}
}

func sameFile(a, b string) (bool, error) {
	ha, err := hashFile(a)
	if err != nil {
		return false, err
	}
	hb, err := hashFile(b)
	if err != nil {
		return false, err
	}
	return bytes.Equal(ha, hb), nil
}

func hashFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return nil, err
	}
	return h.Sum(nil), nil
}
