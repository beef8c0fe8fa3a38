package resync

import (
	"context"
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

func TestVerify(t *testing.T) {
	const bs = 4096
	tests := []struct {
		name   string
		change func(t *testing.T, dst string)
		want   []Difference
	}{
		{name: "identical", change: func(*testing.T, string) {}},
		{
			name:   "a single flipped byte",
			change: func(t *testing.T, dst string) { flip(t, dst, "big/db.img", 2*bs+17) },
			want:   []Difference{{Path: "big/db.img", What: "content", Ranges: []Range{{Off: 2 * bs, Len: bs}}}},
		},
		{
			name:   "a flipped byte in the short last block",
			change: func(t *testing.T, dst string) { flip(t, dst, "big/db.img", 3<<20+100) },
			want:   []Difference{{Path: "big/db.img", What: "content", Ranges: []Range{{Off: 3 << 20, Len: 123}}}},
		},
		{
			name: "a missing and an extra file",
			change: func(t *testing.T, dst string) {
				os.Remove(filepath.Join(dst, "small.txt"))
				write(t, dst, "emptydir/stray", nil, 0o644)
			},
			want: []Difference{
				{Path: "emptydir/stray", What: "extra", Target: "file"},
				{Path: "small.txt", What: "missing", Source: "file"},
			},
		},
		{
			name: "mode, symlink target and size",
			change: func(t *testing.T, dst string) {
				os.Chmod(filepath.Join(dst, "suid"), 0o755)
				os.Remove(filepath.Join(dst, "dangling"))
				os.Symlink("elsewhere", filepath.Join(dst, "dangling"))
				os.Truncate(filepath.Join(dst, "big/other.img"), 2*bs)
			},
			want: []Difference{
				{Path: "big/other.img", What: "size", Source: "2097152", Target: "8192"},
				{Path: "big/other.img", What: "content", Ranges: []Range{{Off: 2 * bs, Len: 2<<20 - 2*bs}}},
				{Path: "dangling", What: "target", Source: "missing", Target: "elsewhere"},
				{Path: "suid", What: "mode", Source: "4755", Target: "0755"},
			},
		},
		{
			name: "a hard link broken",
			change: func(t *testing.T, dst string) {
				os.Remove(filepath.Join(dst, "dir/hard"))
				write(t, dst, "dir/hard", read(t, dst, "dir/sub/deep.bin"), 0o640)
				os.Chown(filepath.Join(dst, "dir/hard"), 1234, 5678)
			},
			want: []Difference{
				{Path: "dir/hard", What: "links", Source: "dir/hard dir/sub/deep.bin"},
				{Path: "dir/sub/deep.bin", What: "links", Source: "dir/hard dir/sub/deep.bin"},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src, dst := t.TempDir(), t.TempDir()
			sampleTree(t, src)
			syncT(t, src, dst, Options{})
			tt.change(t, dst)
			r, err := Verify(context.Background(), src, dst, VerifyOptions{BlockSize: bs})
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(r.Differences, tt.want) {
				t.Errorf("differences:\n%v\nwant:\n%v", r.Differences, tt.want)
			}
			if r.Equal() != (len(tt.want) == 0) || r.Files != 7 {
				t.Errorf("report %+v", r)
			}
		})
	}
}

// TestCompareChanged: what changed on the master after the replica's point
// is left out, exactly: the block that changed, not the file's others.
func TestCompareChanged(t *testing.T) {
	const bs = 4096
	src, dst := t.TempDir(), t.TempDir()
	sampleTree(t, src)
	syncT(t, src, dst, Options{})
	flip(t, src, "big/db.img", 3*bs) // changed since: left out
	flip(t, dst, "big/db.img", 9*bs) // a real difference
	write(t, src, "dir/sub/new", []byte("made since"), 0o644)
	ours, _ := BuildManifest(context.Background(), src, bs, nil, nil)
	theirs, _ := BuildManifest(context.Background(), dst, bs, nil, nil)
	ch := NewChanged()
	ch.Bytes("big/db.img", 3*bs+10, 1)
	ch.Entry("dir/sub")
	r := CompareManifests(ours, theirs, ch)
	want := []Difference{{Path: "big/db.img", What: "content", Ranges: []Range{{Off: 9 * bs, Len: bs}}}}
	if !reflect.DeepEqual(r.Differences, want) || r.Skipped != 4 {
		t.Errorf("differences %v, %d left out; want %v and 4 left out (a block, dir/sub, its two files)", r.Differences, r.Skipped, want)
	}
}

func TestChangedRanges(t *testing.T) {
	c := NewChanged()
	for _, r := range []Range{{100, 10}, {0, 10}, {5, 10}, {200, 1}, {110, 5}} {
		c.Bytes("f", r.Off, r.Len)
	}
	want := []Range{{0, 15}, {100, 15}, {200, 1}}
	if got := c.Ranges("f"); !reflect.DeepEqual(got, want) {
		t.Errorf("merged %v, want %v", got, want)
	}
	for _, tt := range []struct {
		off, n int64
		want   bool
	}{{15, 85, false}, {14, 1, true}, {114, 1, true}, {115, 85, false}, {199, 2, true}, {201, 100, false}} {
		if got := c.block("f", tt.off, tt.n); got != tt.want {
			t.Errorf("block(%d, %d) = %v, want %v", tt.off, tt.n, got, tt.want)
		}
	}
	c.Entry("")
	if !c.Named("any/path") {
		t.Error("a change of the root's names does not cover what is beneath it")
	}
}
