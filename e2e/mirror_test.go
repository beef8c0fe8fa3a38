package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
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
