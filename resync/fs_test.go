//go:build linux

package resync

import (
	"context"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/writecap/writecap/snapshot"
)

// TestSyncOnFilesystems runs sync, verify and an offline import into real
// file systems on loop devices.
func TestSyncOnFilesystems(t *testing.T) {
	const bs = 4096
	tests := []struct {
		name string
		mkfs []string
	}{
		{name: "ext4", mkfs: []string{"mkfs.ext4", "-q", "-F"}},
		{name: "xfs", mkfs: []string{"mkfs.xfs", "-q", "-f"}},
		{name: "btrfs", mkfs: []string{"mkfs.btrfs", "-q", "-f"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			needRoot(t, tt.mkfs[0], "mount")
			mnt, _ := mountImage(t, makeFS(t, tt.mkfs, 320<<20), "rw")
			src, dst := t.TempDir(), filepath.Join(mnt, "replica")
			sampleTree(t, src)
			syncT(t, src, dst, Options{BlockSize: bs})
			assertSame(t, src, dst)

			flip(t, src, "big/db.img", 7*bs)
			st := syncT(t, src, dst, Options{BlockSize: bs})
			assertSame(t, src, dst)
			if st.BlocksSent != 1 || st.Patched != 1 || st.Copied != 0 {
				t.Errorf("after one changed block: %+v, want one block of one file sent", st)
			}

			flip(t, dst, "big/other.img", 100)
			r, err := Verify(context.Background(), src, dst, VerifyOptions{BlockSize: bs})
			if err != nil {
				t.Fatal(err)
			}
			want := []Difference{{Path: "big/other.img", What: "content", Ranges: []Range{{Off: 0, Len: bs}}}}
			if !reflect.DeepEqual(r.Differences, want) {
				t.Errorf("verify found %v, want %v", r.Differences, want)
			}

			media, imported := filepath.Join(mnt, "media"), filepath.Join(mnt, "imported")
			if _, err := Export(context.Background(), src, media, Options{BlockSize: bs}); err != nil {
				t.Fatal(err)
			}
			if _, err := Import(context.Background(), media, imported, Options{}); err != nil {
				t.Fatal(err)
			}
			assertSame(t, src, imported)
		})
	}
}

// TestSyncFromSnapshot: a sync from a freeze snapshot of a tree on xfs
// copies the tree and leaves no snapshot behind.
func TestSyncFromSnapshot(t *testing.T) {
	needRoot(t, "mkfs.xfs", "mount")
	mnt, _ := mountImage(t, makeFS(t, []string{"mkfs.xfs", "-q", "-f"}, 320<<20), "rw")
	src, dst := filepath.Join(mnt, "data"), t.TempDir()
	sampleTree(t, src)
	p, err := snapshot.ByName("freeze", snapshot.Options{})
	if err != nil {
		t.Fatal(err)
	}
	syncT(t, src, dst, Options{Snapshot: p})
	assertSame(t, src, dst)
	if ents, _ := os.ReadDir(filepath.Join(mnt, snapshot.StagingName)); len(ents) != 0 {
		t.Errorf("snapshot staging still holds %d entries", len(ents))
	}
}
