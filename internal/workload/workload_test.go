//go:build linux

package workload

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/writecap/writecap/internal/treecmp"
)

func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("the workload chowns files: needs root")
	}
}

func TestRunEveryOp(t *testing.T) {
	needRoot(t)
	tests := []struct {
		name string
		seed int64
	}{
		{name: "seed 1", seed: 1},
		{name: "seed 2", seed: 2},
		{name: "seed 3", seed: 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			stats, err := Run(context.Background(), t.TempDir(), Options{
				Seed: tt.seed, Threads: 4, OpsPerThread: 2000, MaxWrite: 4 << 20, Outside: t.TempDir(),
			})
			if err != nil {
				t.Fatal(err)
			}
			for _, name := range OpNames() {
				if stats.Ops[name] == 0 {
					t.Errorf("%s never succeeded", name)
				}
			}
			t.Logf("%v", stats.Ops)
		})
	}
}

func TestRunDeterministic(t *testing.T) {
	needRoot(t)
	run := func(seed int64) string {
		t.Helper()
		root := t.TempDir()
		opts := Options{Seed: seed, Threads: 1, OpsPerThread: 3000, MaxWrite: 4 << 20, Outside: t.TempDir()}
		if _, err := Run(context.Background(), root, opts); err != nil {
			t.Fatal(err)
		}
		return root
	}
	a, b := run(7), run(7)
	treecmp.AssertEqual(t, a, b, treecmp.Options{Owners: true})
	// The comparison above means something only if seeds make a difference.
	if diffs, err := treecmp.Compare(a, run(8), treecmp.Options{Owners: true}); err != nil || len(diffs) == 0 {
		t.Errorf("seeds 7 and 8 gave the same tree (err %v)", err)
	}
}

func TestRunRejects(t *testing.T) {
	needRoot(t)
	tests := []struct {
		name string
		opts func(root string) Options
	}{
		{name: "no threads", opts: func(string) Options { return Options{OpsPerThread: 1, MaxWrite: 1} }},
		{name: "no write size", opts: func(string) Options { return Options{Threads: 1, OpsPerThread: 1} }},
		{name: "outside under root", opts: func(root string) Options {
			return Options{Threads: 1, OpsPerThread: 1, MaxWrite: 1, Outside: filepath.Join(root, "a")}
		}},
		{name: "outside missing", opts: func(root string) Options {
			return Options{Threads: 1, OpsPerThread: 1, MaxWrite: 1, Outside: root + "-nope"}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := t.TempDir()
			if _, err := Run(context.Background(), root, tt.opts(root)); err == nil {
				t.Error("Run succeeded")
			}
		})
	}
}

func TestRunCancel(t *testing.T) {
	needRoot(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := Run(ctx, t.TempDir(), Options{Threads: 2, OpsPerThread: 1000, MaxWrite: 1 << 20})
	if err != context.Canceled {
		t.Errorf("Run = %v, want %v", err, context.Canceled)
	}
}
