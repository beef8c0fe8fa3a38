package bench

import (
	"bufio"
	"context"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"testing"
	"time"

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
	orig := filepath.Join(dir, "orig", "big")
	writeRandom(b, orig, size, 1)
	src := filepath.Join(dir, "src")
	copyTree(b, filepath.Dir(orig), src)
	changed := changeBlocks(b, filepath.Join(src, "big"), size, 4096, 100)
	oursDst, rsyncDst := filepath.Join(dir, "ours"), filepath.Join(dir, "theirs")
	copyTree(b, filepath.Dir(orig), oursDst)
	copyTree(b, filepath.Dir(orig), rsyncDst)

	ours, st := timeSync(b, src, oursDst, resync.Options{BlockSize: 4096})
	theirs, sent := timeRsync(b, src, rsyncDst, "--inplace", "--no-whole-file", "-a")
	b.Logf("%d MiB file, %d of %d 4 KiB blocks changed", size>>20, changed, size/4096)
	b.Logf("writecap sync (local): %v, %d bytes sent (%d blocks)", ours, st.BytesSent, st.BlocksSent)
	b.Logf("rsync --inplace --no-whole-file (daemon on loopback): %v, %d bytes sent and received", theirs, sent)
	b.Logf("time ratio writecap/rsync %.3f (goal <= 0.5), bytes ratio %.3f (goal <= 1)",
		ours.Seconds()/theirs.Seconds(), float64(st.BytesSent)/float64(sent))
	b.ReportMetric(ours.Seconds()/theirs.Seconds(), "time-ratio")
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
