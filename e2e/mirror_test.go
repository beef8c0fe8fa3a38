package e2e

import (
	"context"
	binenc "encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/writecap/writecap/internal/treecmp"
	"github.com/writecap/writecap/internal/workload"
)

// TestMirrorWorkload runs the randomized multi-threaded workload over every
// captured operation while mirror runs, then requires identical trees.
func TestMirrorWorkload(t *testing.T) {
	requireBPF(t)
	for _, seed := range []int64{1, 2, 3, 4} {
		t.Run(fmt.Sprintf("seed%d", seed), func(t *testing.T) {
			base := t.TempDir()
			src, dst, outside := filepath.Join(base, "src"), filepath.Join(base, "dst"), filepath.Join(base, "outside")
			for _, d := range []string{src, outside} {
				if err := os.Mkdir(d, 0o755); err != nil {
					t.Fatal(err)
				}
			}
			// Content that exists before capture starts goes through the
			// initial copy.
			if err := os.WriteFile(filepath.Join(src, "before"), []byte("present at start"), 0o640); err != nil {
				t.Fatal(err)
			}
			m := startMirror(t, src, dst)
			st, err := workload.Run(context.Background(), src, workload.Options{
				Seed: seed, Threads: 4, OpsPerThread: 1500, MaxWrite: 3 << 20, Outside: outside,
			})
			if err != nil {
				t.Fatal(err)
			}
			for _, op := range workload.OpNames() {
				if st.Ops[op] == 0 {
					t.Errorf("workload never completed %s: the test would not cover it", op)
				}
			}
			m.stop(t)
			treecmp.AssertEqual(t, src, dst, treecmp.Options{Owners: true})
		})
	}
}

// TestMirrorRefuses covers the start-up checks: no overlapping trees, and a
// clear message when BPF cannot be loaded.
func TestMirrorRefuses(t *testing.T) {
	requireBPF(t)
	base := t.TempDir()
	src := filepath.Join(base, "src")
	if err := os.MkdirAll(filepath.Join(src, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		args   []string
		expect string
	}{
		{"target inside source", []string{"mirror", "--source", src, "--target", filepath.Join(src, "sub")}, "must not contain each other"},
		{"source inside target", []string{"mirror", "--source", filepath.Join(src, "sub"), "--target", src}, "must not contain each other"},
		{"same directory", []string{"mirror", "--source", src, "--target", src}, "must not contain each other"},
		{"missing source", []string{"mirror", "--source", filepath.Join(base, "nope"), "--target", filepath.Join(base, "t")}, "no such file"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, stderr := exitCode(t, tc.args...)
			if code == 0 || !strings.Contains(stderr, tc.expect) {
				t.Fatalf("exit %d, stderr %q; want non-zero and %q", code, stderr, tc.expect)
			}
		})
	}
	if entries, _ := os.ReadDir(filepath.Join(src, "sub")); len(entries) != 0 {
		t.Fatalf("a refused mirror touched the tree: %v", entries)
	}
}

// TestMirrorRingOverflow: with a ring far too small for the workload, the
// kernel drops records; every loss must come back as a repair from the
// source, never as a silent difference.
func TestMirrorRingOverflow(t *testing.T) {
	requireBPF(t)
	base := t.TempDir()
	src, dst := filepath.Join(base, "src"), filepath.Join(base, "dst")
	if err := os.Mkdir(src, 0o755); err != nil {
		t.Fatal(err)
	}
	m := startMirror(t, src, dst, "--ring-size", "65536")
	if _, err := workload.Run(context.Background(), src, workload.Options{
		Seed: 11, Threads: 2, OpsPerThread: 1500, MaxWrite: 2 << 20,
	}); err != nil {
		t.Fatal(err)
	}
	m.stop(t)
	if !strings.Contains(m.stderr.String(), "ring buffer full") {
		t.Fatalf("no loss was reported, so the test did not exercise it:\n%s", lastLines(m.stderr.String(), 20))
	}
	treecmp.AssertEqual(t, src, dst, treecmp.Options{Owners: true})
}

// TestMirrorNotRoot: without the privilege to load BPF, mirror says so and
// exits non-zero.
func TestMirrorNotRoot(t *testing.T) {
	requireBPF(t)
	dir, err := os.MkdirTemp("", "writecap-noroot")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	bin := filepath.Join(dir, "writecap")
	data, err := os.ReadFile(binary)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{filepath.Join(dir, "src"), filepath.Join(dir, "dst")} {
		if err := os.Mkdir(d, 0o777); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(bin, data, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "mirror", "--source", filepath.Join(dir, "src"), "--target", filepath.Join(dir, "dst"))
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() == 0 {
		t.Fatalf("mirror as nobody: %v, want a non-zero exit\n%s", err, out)
	}
	if !strings.Contains(string(out), "needs root") {
		t.Fatalf("message does not say why: %s", out)
	}
	if strings.Contains(string(out), "ready") {
		t.Fatalf("printed ready without capture: %s", out)
	}
}

// TestMirrorSyncDuringWrites: the target already holds an older copy of a
// multi-GiB tree (1% of its blocks different, extra and wrongly typed
// entries); mirror compares it block by block while a random workload and a
// block writer change the source throughout. Only differing blocks cross,
// and the trees end identical.
func TestMirrorSyncDuringWrites(t *testing.T) {
	requireBPF(t)
	base := t.TempDir()
	src, dst, outside := filepath.Join(base, "src"), filepath.Join(base, "dst"), filepath.Join(base, "outside")
	for _, d := range []string{src, dst, outside, filepath.Join(src, "db"), filepath.Join(dst, "db"), filepath.Join(src, "work")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	const (
		files    = 8
		fileSize = 256 << 20
	)
	for i := range files {
		writeStale(t, filepath.Join(src, "db", fmt.Sprint(i)), filepath.Join(dst, "db", fmt.Sprint(i)), uint64(i), fileSize)
	}
	if err := os.WriteFile(filepath.Join(dst, "extra"), []byte("only on the target"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(dst, "w"), 0o755); err != nil { // the workload's files go here as a directory
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(src, "w"), []byte("a file on the source"), 0o644); err != nil {
		t.Fatal(err)
	}

	m := startMirror(t, src, dst)
	stop := make(chan struct{})
	blocks := make(chan error, 1)
	go func() { blocks <- overwriteBlocks(filepath.Join(src, "db"), files, fileSize, stop) }()
	_, err := workload.Run(context.Background(), filepath.Join(src, "work"), workload.Options{
		Seed: 21, Threads: 4, OpsPerThread: 1500, MaxWrite: 1 << 20, Outside: outside,
	})
	close(stop)
	if err != nil {
		t.Fatal(err)
	}
	if err := <-blocks; err != nil {
		t.Fatal(err)
	}
	m.stop(t)
	treecmp.AssertEqual(t, src, dst, treecmp.Options{Owners: true})
	kept := logInt(t, m.stderr.String(), "target_bytes_kept")
	if kept < files*fileSize*3/4 {
		t.Errorf("the initial copy kept %d bytes of the target's %d: it should send only what differs", kept, files*fileSize)
	}
}

// writeStale writes a random file at src and a copy at dst with one block
// in a hundred different.
func writeStale(t *testing.T, src, dst string, seed uint64, size int) {
	t.Helper()
	const bs = 64 << 10
	r := rand.New(rand.NewPCG(seed, 1))
	a, err := os.Create(src)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := os.Create(dst)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	buf := make([]byte, bs)
	for off := 0; off < size; off += bs {
		for i := 0; i < bs; i += 8 {
			binenc.LittleEndian.PutUint64(buf[i:], r.Uint64())
		}
		if _, err := a.Write(buf); err != nil {
			t.Fatal(err)
		}
		if r.IntN(100) == 0 {
			buf[r.IntN(bs)] ^= 0xff
		}
		if _, err := b.Write(buf); err != nil {
			t.Fatal(err)
		}
	}
}

// overwriteBlocks writes random 4 KiB blocks into the files until stop, at
// most 2000: enough to change blocks while the initial copy reads them, few
// enough to leave most blocks as the target has them.
func overwriteBlocks(dir string, files, size int, stop <-chan struct{}) error {
	r := rand.New(rand.NewPCG(99, 2))
	buf := make([]byte, 4096)
	for range 2000 {
		select {
		case <-stop:
			return nil
		default:
		}
		f, err := os.OpenFile(filepath.Join(dir, fmt.Sprint(r.IntN(files))), os.O_WRONLY, 0)
		if err != nil {
			return err
		}
		for i := range buf {
			buf[i] = byte(r.Uint32())
		}
		_, err = f.WriteAt(buf, int64(r.IntN(size/4096))*4096)
		f.Close()
		if err != nil {
			return err
		}
	}
	return nil
}

// logInt reads the last value of key=N from an agent's log.
func logInt(t *testing.T, log, key string) int {
	t.Helper()
	i := strings.LastIndex(log, key+"=")
	if i < 0 {
		t.Fatalf("log has no %s:\n%s", key, lastLines(log, 20))
	}
	var n int
	fmt.Sscanf(log[i+len(key)+1:], "%d", &n)
	return n
}
