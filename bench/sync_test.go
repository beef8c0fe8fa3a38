package bench

import (
	"bufio"
	"context"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/writecap/writecap/master"
	"github.com/writecap/writecap/resync"
)

// The sync benchmarks compare writecap's sync with rsync and cp on the same
// data in one run, each timed from cold caches. rsync runs as a daemon on
// loopback; writecap's sync here runs between local directories (both ends
// in one process), which the report says. WRITECAP_SYNC_BYTES sets the
// large file's size (default 4 GiB), WRITECAP_SYNC_FILES the small files'
// count (default 100000).

// BenchmarkSyncBlocks: a large file with 1% of its 4 KiB blocks changed at
// random, against rsync --inplace --no-whole-file.
func BenchmarkSyncBlocks(b *testing.B) {
	needRoot(b)
	size := envInt(b, "WRITECAP_SYNC_BYTES", 4<<30)
	dir := b.TempDir()
	src, oursDst, rsyncDst := filepath.Join(dir, "src"), filepath.Join(dir, "ours"), filepath.Join(dir, "theirs")
	changed := staleCopies(b, dir, size, src, oursDst, rsyncDst)

	ours, st := timeSync(b, src, oursDst, resync.Options{BlockSize: 4096})
	theirs, sent := timeRsync(b, src, rsyncDst, "--inplace", "--no-whole-file", "-a")
	b.Logf("%d MiB file, %d of %d 4 KiB blocks changed", size>>20, changed, size/4096)
	b.Logf("writecap sync (local): %v, %d bytes sent (%d blocks)", ours, st.BytesSent, st.BlocksSent)
	b.Logf("rsync --inplace --no-whole-file (daemon on loopback): %v, %d bytes sent and received", theirs, sent)
	b.Logf("time ratio writecap/rsync %.3f (goal <= 0.5), bytes ratio %.3f (goal <= 1)",
		ours.Seconds()/theirs.Seconds(), float64(st.BytesSent)/float64(sent))
	b.ReportMetric(ours.Seconds()/theirs.Seconds(), "time-ratio")
}

// BenchmarkSyncBlocksNetwork: the same change as BenchmarkSyncBlocks, but
// writecap's side is a master and a replica over loopback TLS: the replica
// holds the older file, sends its manifest, and the master's copy against it
// carries only the differing blocks. Timed from the agents' start to the
// replica having applied everything (see settle).
func BenchmarkSyncBlocksNetwork(b *testing.B) {
	needRoot(b)
	size := envInt(b, "WRITECAP_SYNC_BYTES", 4<<30)
	dir := b.TempDir()
	base := filepath.Join(dir, "pair")
	os.MkdirAll(base, 0o755)
	rsyncDst := filepath.Join(dir, "theirs")
	changed := staleCopies(b, dir, size, filepath.Join(base, "src"), filepath.Join(base, "dst"), rsyncDst)

	dropCaches(b)
	start := time.Now()
	p := startPair(b, base, func(c *master.Config) { c.BlockSize = 4096 })
	// The copy reaches the spool in pieces while capture reads the file:
	// done is the replica having applied all, with capture quiet for a
	// settle period (included in the time, so it is an upper bound).
	const settle = 500 * time.Millisecond
	var ours time.Duration
	for last := uint64(0); ; {
		waitCaughtUp(b, p)
		now := report(b, p.mmetrics).Scenarios[0].Captured
		if now == last {
			ours = time.Since(start) - settle
			break
		}
		last = now
		time.Sleep(settle)
	}
	sent := metricValue(b, p.mmetrics, "writecap_master_sent_bytes_total")
	p.close(b)
	if same, err := sameFile(filepath.Join(base, "src", "big"), filepath.Join(base, "dst", "big")); err != nil || !same {
		b.Fatalf("the replica's file differs from the master's after the copy (%v)", err)
	}
	manifest := int64(size/4096) * resync.HashSize
	theirs, rsent := timeRsync(b, filepath.Join(base, "src"), rsyncDst, "--inplace", "--no-whole-file", "-a")
	b.Logf("%d MiB file, %d of %d 4 KiB blocks changed", size>>20, changed, size/4096)
	b.Logf("writecap master and replica over loopback TLS: %v, %d batch bytes sent (lz4) plus the replica's manifest, about %d bytes of hashes",
		ours, int64(sent), manifest)
	b.Logf("rsync --inplace --no-whole-file (daemon on loopback): %v, %d bytes sent and received", theirs, rsent)
	b.Logf("time ratio writecap/rsync %.3f (goal <= 0.5), bytes ratio %.3f (goal <= 1)",
		ours.Seconds()/theirs.Seconds(), (sent+float64(manifest))/float64(rsent))
	b.ReportMetric(ours.Seconds()/theirs.Seconds(), "time-ratio")
}

// metricValue reads one sample from an agent's /metrics.
func metricValue(b *testing.B, addr, name string) float64 {
	b.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		b.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if line := sc.Text(); strings.HasPrefix(line, name+"{") || strings.HasPrefix(line, name+" ") {
			f := strings.Fields(line)
			v, err := strconv.ParseFloat(f[len(f)-1], 64)
			if err != nil {
				b.Fatal(err)
			}
			return v
		}
	}
	b.Fatalf("%s serves no %s", addr, name)
	return 0
}

// BenchmarkSyncSmallFiles: a tree of small files with 1% changed, against
// rsync -a.
func BenchmarkSyncSmallFiles(b *testing.B) {
	needRoot(b)
	n := envInt(b, "WRITECAP_SYNC_FILES", 100000)
	dir := b.TempDir()
	orig := filepath.Join(dir, "orig")
	r := rand.New(rand.NewPCG(5, 5))
	for i := range n {
		p := filepath.Join(orig, fmt.Sprintf("d%03d", i%1000), fmt.Sprintf("f%06d", i))
		if i < 1000 {
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				b.Fatal(err)
			}
		}
		if err := os.WriteFile(p, randBytes(r, 512+r.IntN(8192)), 0o644); err != nil {
			b.Fatal(err)
		}
	}
	src, oursDst, rsyncDst := filepath.Join(dir, "src"), filepath.Join(dir, "ours"), filepath.Join(dir, "theirs")
	for _, d := range []string{src, oursDst, rsyncDst} {
		copyTree(b, orig, d)
	}
	future := time.Now().Add(time.Hour)
	for i := 0; i < n; i += 100 {
		p := filepath.Join(src, fmt.Sprintf("d%03d", i%1000), fmt.Sprintf("f%06d", i))
		if err := os.WriteFile(p, randBytes(r, 512+r.IntN(8192)), 0o644); err != nil {
			b.Fatal(err)
		}
		os.Chtimes(p, future, future)
	}
	ours, st := timeSync(b, src, oursDst, resync.Options{})
	theirs, sent := timeRsync(b, src, rsyncDst, "-a")
	b.Logf("%d files, %d changed", n, n/100)
	b.Logf("writecap sync (local): %v, %d copied, %d bytes sent", ours, st.Copied, st.BytesSent)
	b.Logf("rsync -a (daemon on loopback): %v, %d bytes sent and received", theirs, sent)
	b.Logf("time ratio writecap/rsync %.3f (goal <= 0.5)", ours.Seconds()/theirs.Seconds())
	b.ReportMetric(ours.Seconds()/theirs.Seconds(), "time-ratio")
}

// BenchmarkSyncFirst: the first sync of a large file into an empty target,
// against cp, alternating three rounds each (the disk is shared and noisy)
// and comparing the medians.
func BenchmarkSyncFirst(b *testing.B) {
	needRoot(b)
	size := envInt(b, "WRITECAP_SYNC_BYTES", 4<<30)
	dir := b.TempDir()
	src := filepath.Join(dir, "src")
	writeRandom(b, filepath.Join(src, "big"), size, 2)
	var ours, theirs []time.Duration
	for i := range 3 {
		dst := filepath.Join(dir, fmt.Sprint("ours", i))
		d, _ := timeSync(b, src, dst, resync.Options{})
		ours = append(ours, d)
		os.RemoveAll(dst)
		dst = filepath.Join(dir, fmt.Sprint("cp", i))
		dropCaches(b)
		start := time.Now()
		if out, err := exec.Command("cp", "-a", src, dst).CombinedOutput(); err != nil {
			b.Fatalf("cp: %v\n%s", err, out)
		}
		syncFS(b, dst)
		theirs = append(theirs, time.Since(start))
		os.RemoveAll(dst)
	}
	rate := func(d time.Duration) float64 { return float64(size) / d.Seconds() / (1 << 20) }
	mo, mt := median(ours), median(theirs)
	b.Logf("%d MiB: writecap sync %v (median of %v, %.0f MiB/s), cp -a then syncfs %v (median of %v, %.0f MiB/s)",
		size>>20, mo, ours, rate(mo), mt, theirs, rate(mt))
	b.Logf("rate ratio writecap/cp %.3f (goal >= 0.9)", rate(mo)/rate(mt))
	b.ReportMetric(rate(mo)/rate(mt), "rate-ratio")
}

// staleCopies writes a random file "big" of size bytes into the directory
// src with one 4 KiB block in a hundred rewritten, and its original into
// each of stale; it returns how many blocks differ.
func staleCopies(b *testing.B, dir string, size int, src string, stale ...string) int {
	b.Helper()
	orig := filepath.Join(dir, "orig", "big")
	writeRandom(b, orig, size, 1)
	copyTree(b, filepath.Dir(orig), src)
	changed := changeBlocks(b, filepath.Join(src, "big"), size, 4096, 100)
	for _, d := range stale {
		copyTree(b, filepath.Dir(orig), d)
	}
	return changed
}

func needRoot(b *testing.B) {
	b.Helper()
	if os.Geteuid() != 0 {
		b.Skip("dropping caches and an rsync daemon need root")
	}
}

func envInt(b *testing.B, name string, def int) int {
	b.Helper()
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		b.Fatalf("%s=%q: %v", name, v, err)
	}
	return n
}

func randBytes(r *rand.Rand, n int) []byte {
	buf := make([]byte, n+8)
	for i := 0; i < n; i += 8 {
		binary.LittleEndian.PutUint64(buf[i:], r.Uint64())
	}
	return buf[:n]
}

func writeRandom(b *testing.B, p string, size int, seed uint64) {
	b.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		b.Fatal(err)
	}
	f, err := os.Create(p)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	r := rand.New(rand.NewPCG(seed, seed))
	w := bufio.NewWriterSize(f, 1<<20)
	for off := 0; off < size; off += 1 << 20 {
		if _, err := w.Write(randBytes(r, min(1<<20, size-off))); err != nil {
			b.Fatal(err)
		}
	}
	if err := w.Flush(); err != nil {
		b.Fatal(err)
	}
}

// changeBlocks rewrites one block in every `every`, at random places, and
// returns how many distinct blocks changed.
func changeBlocks(b *testing.B, p string, size, bs, every int) int {
	b.Helper()
	f, err := os.OpenFile(p, os.O_RDWR, 0)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	r := rand.New(rand.NewPCG(7, 7))
	seen := map[int]bool{}
	for range size / bs / every {
		i := r.IntN(size / bs)
		seen[i] = true
		if _, err := f.WriteAt(randBytes(r, bs), int64(i*bs)); err != nil {
			b.Fatal(err)
		}
	}
	// rsync compares whole seconds: move the time well away.
	future := time.Now().Add(time.Hour)
	if err := os.Chtimes(p, future, future); err != nil {
		b.Fatal(err)
	}
	return len(seen)
}

func copyTree(b *testing.B, from, to string) {
	b.Helper()
	if out, err := exec.Command("cp", "-a", from, to).CombinedOutput(); err != nil {
		b.Fatalf("cp -a %s %s: %v\n%s", from, to, err, out)
	}
}

func dropCaches(b *testing.B) {
	b.Helper()
	exec.Command("sync").Run()
	if err := os.WriteFile("/proc/sys/vm/drop_caches", []byte("3"), 0o200); err != nil {
		b.Fatalf("drop caches: %v", err)
	}
}

func syncFS(b *testing.B, p string) {
	b.Helper()
	if out, err := exec.Command("sync", "-f", p).CombinedOutput(); err != nil {
		b.Fatalf("sync -f: %v\n%s", err, out)
	}
}

func timeSync(b *testing.B, src, dst string, o resync.Options) (time.Duration, resync.Stats) {
	b.Helper()
	dropCaches(b)
	start := time.Now()
	st, err := resync.Sync(context.Background(), src, dst, o)
	if err != nil {
		b.Fatal(err)
	}
	return time.Since(start), st
}

var rsyncTotals = regexp.MustCompile(`(?m)^Total bytes sent: ([\d,]+)\s*\nTotal bytes received: ([\d,]+)`)

// timeRsync runs rsync from src/ into dst through an rsync daemon on
// loopback, then syncfs (writecap's sync ends durable too), and returns the
// time and the bytes that crossed both ways.
func timeRsync(b *testing.B, src, dst string, args ...string) (time.Duration, int64) {
	b.Helper()
	if _, err := exec.LookPath("rsync"); err != nil {
		b.Skip("rsync is not installed")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	conf := filepath.Join(b.TempDir(), "rsyncd.conf")
	os.WriteFile(conf, []byte(fmt.Sprintf("uid = root\ngid = root\nuse chroot = no\n[dst]\npath = %s\nread only = no\n", dst)), 0o644)
	d := exec.Command("rsync", "--daemon", "--no-detach", "--address", "127.0.0.1", "--port", strconv.Itoa(port), "--config", conf)
	if err := d.Start(); err != nil {
		b.Fatal(err)
	}
	defer func() { d.Process.Kill(); d.Wait() }()
	url := fmt.Sprintf("rsync://127.0.0.1:%d/dst/", port)
	for range 100 { // until the daemon listens
		if c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port)); err == nil {
			c.Close()
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	dropCaches(b)
	start := time.Now()
	out, err := exec.Command("rsync", append(append(args, "--stats"), src+"/", url)...).CombinedOutput()
	if err != nil {
		b.Fatalf("rsync: %v\n%s", err, out)
	}
	syncFS(b, dst)
	elapsed := time.Since(start)
	m := rsyncTotals.FindSubmatch(out)
	if m == nil {
		b.Fatalf("rsync --stats printed no totals:\n%s", out)
	}
	num := func(s []byte) int64 {
		n, _ := strconv.ParseInt(regexp.MustCompile(`,`).ReplaceAllString(string(s), ""), 10, 64)
		return n
	}
	return elapsed, num(m[1]) + num(m[2])
}
