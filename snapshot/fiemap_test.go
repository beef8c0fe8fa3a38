//go:build linux

package snapshot

import (
	"os"
	"path/filepath"
	"slices"
	"testing"

	"golang.org/x/sys/unix"
)

func TestDiffExtents(t *testing.T) {
	const K = 1024
	for _, tc := range []struct {
		name string
		a, b []extent
		size int64
		want []span
	}{
		{
			name: "same blocks",
			a:    []extent{{0, 100 * K, 64 * K, 0}},
			b:    []extent{{0, 100 * K, 64 * K, fiemapExtentLast}},
			size: 64 * K,
		},
		{
			name: "one block rewritten",
			a:    []extent{{0, 100 * K, 8 * K, 0}, {8 * K, 900 * K, 4 * K, 0}, {12 * K, 112 * K, 52 * K, 0}},
			b:    []extent{{0, 100 * K, 64 * K, 0}},
			size: 64 * K,
			want: []span{{8 * K, 12 * K}},
		},
		{
			name: "same blocks at another offset",
			a:    []extent{{0, 100 * K, 8 * K, 0}},
			b:    []extent{{0, 104 * K, 8 * K, 0}},
			size: 8 * K,
			want: []span{{0, 8 * K}},
		},
		{
			name: "holes in both",
			a:    []extent{{0, 100 * K, 4 * K, 0}, {60 * K, 160 * K, 4 * K, 0}},
			b:    []extent{{0, 100 * K, 4 * K, 0}, {60 * K, 160 * K, 4 * K, 0}},
			size: 64 * K,
		},
		{
			name: "hole in one",
			a:    []extent{{0, 100 * K, 4 * K, 0}},
			b:    []extent{{0, 100 * K, 8 * K, 0}},
			size: 8 * K,
			want: []span{{4 * K, 8 * K}},
		},
		{
			name: "grown past the copy",
			a:    []extent{{0, 100 * K, 12 * K, 0}},
			b:    []extent{{0, 100 * K, 4 * K, 0}},
			size: 10 * K,
			want: []span{{4 * K, 10 * K}},
		},
		{
			name: "inline data",
			a:    []extent{{0, 0, 4 * K, 0x200 | 0x100}},
			b:    []extent{{0, 0, 4 * K, 0x200 | 0x100}},
			size: 2 * K,
			want: []span{{0, 2 * K}},
		},
		{
			name: "compressed",
			a:    []extent{{0, 100 * K, 128 * K, 0x8}},
			b:    []extent{{0, 100 * K, 128 * K, 0x8}},
			size: 128 * K,
			want: []span{{0, 128 * K}},
		},
		{
			name: "unwritten in one",
			a:    []extent{{0, 100 * K, 4 * K, fiemapExtentUnwritten}},
			b:    []extent{{0, 100 * K, 4 * K, 0}},
			size: 4 * K,
			want: []span{{0, 4 * K}},
		},
		{
			name: "adjacent differences merge",
			a:    []extent{{0, 200 * K, 4 * K, 0}, {4 * K, 300 * K, 4 * K, 0}},
			b:    []extent{{0, 100 * K, 8 * K, 0}},
			size: 8 * K,
			want: []span{{0, 8 * K}},
		},
		{
			name: "empty",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := diffExtents(tc.a, tc.b, tc.size); !slices.Equal(got, tc.want) {
				t.Errorf("diffExtents = %v; want %v", got, tc.want)
			}
		})
	}
}

// TestDifferingReflink: after a reflink and a write of one block to the
// original, FIEMAP tells that block apart and nothing much else.
func TestDifferingReflink(t *testing.T) {
	for _, fstype := range []string{"xfs", "btrfs"} {
		t.Run(fstype, func(t *testing.T) {
			mnt := loopFS(t, fstype)
			a := filepath.Join(mnt, "a")
			must(t, os.WriteFile(a, pattern(8<<20, 1), 0o644))
			fa, err := os.OpenFile(a, os.O_RDWR, 0)
			must(t, err)
			defer fa.Close()
			fb, err := os.Create(filepath.Join(mnt, "b"))
			must(t, err)
			defer fb.Close()
			must(t, unix.IoctlFileClone(int(fb.Fd()), int(fa.Fd())))

			const off = 5<<20 + 4096
			_, err = fa.WriteAt(pattern(4096, 2), off)
			must(t, err)
			// Written back, as on a frozen filesystem.
			must(t, fa.Sync())
			spans, err := differing(fa, fb, 8<<20)
			must(t, err)
			var total int64
			covered := false
			for _, s := range spans {
				total += s.end - s.off
				covered = covered || s.off <= off && off+4096 <= s.end
			}
			if !covered || total > 256<<10 {
				t.Errorf("differing ranges %v (%d bytes); want the 4 KiB at %d and at most 256 KiB", spans, total, off)
			}
		})
	}
}
