package e2e

import (
	"context"
	"errors"
	"fmt"
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
