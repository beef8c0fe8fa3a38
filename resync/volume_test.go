//go:build linux

package resync

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/writecap/writecap/internal/treecmp"
)

// needRoot skips a test that needs root and tools, unless CI demands
// that it run.
func needRoot(t *testing.T, tools ...string) {
	t.Helper()
	why := ""
	if os.Geteuid() != 0 {
		why = "needs root"
	}
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil && why == "" {
			why = "needs " + tool
		}
	}
	if why == "" {
		return
	}
	if os.Getenv("WRITECAP_REQUIRE_BPF") == "1" {
		t.Fatalf("WRITECAP_REQUIRE_BPF=1 but this test cannot run: %s", why)
	}
	t.Skip(why)
}

// volCmd runs a command and returns its output, failing the test with the
// output when it fails.
func volCmd(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// mountImage mounts the image img through a loop device on a new directory;
// umount undoes it, and so does the test's end when it was not called.
func mountImage(t *testing.T, img, opts string) (dir string, umount func()) {
	t.Helper()
	dir = t.TempDir()
	volCmd(t, "mount", "-o", "loop,"+opts, img, dir)
	mounted := true
	t.Cleanup(func() {
		if mounted {
			_ = exec.Command("umount", dir).Run()
		}
	})
	return dir, func() {
		t.Helper()
		mounted = false
		volCmd(t, "umount", dir)
	}
}

// volLoop attaches the file img to a loop device until the test ends.
func volLoop(t *testing.T, img string) string {
	t.Helper()
	dev := strings.TrimSpace(volCmd(t, "losetup", "--find", "--show", img))
	t.Cleanup(func() { _ = exec.Command("losetup", "-d", dev).Run() })
	return dev
}

func volRandom(seed uint64, n int) []byte {
	b := make([]byte, n)
	_, _ = rand.NewChaCha8([32]byte{byte(seed), byte(seed >> 8)}).Read(b)
	return b
}

func volWrite(t *testing.T, name string, data []byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(name), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(name, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

// volWriteAt overwrites part of a file.
func volWriteAt(t *testing.T, name string, data []byte, off int64) {
	t.Helper()
	f, err := os.OpenFile(name, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt(data, off); err != nil {
		t.Fatal(err)
	}
}

// volSyncT runs SyncVolume, checks what holds for every run and logs the
// figures.
func volSyncT(t *testing.T, o VolumeOptions) VolumeStats {
	t.Helper()
	var last [2]int64
	o.Progress = func(done, total int64) {
		if done < last[0] || done > total {
			t.Errorf("progress %d of %d after %d", done, total, last[0])
		}
		last = [2]int64{done, total}
	}
	st, err := SyncVolume(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%+v", st)
	if st.Unused+st.Same+st.Sent != st.Blocks {
		t.Errorf("unused %d + same %d + sent %d != %d blocks", st.Unused, st.Same, st.Sent, st.Blocks)
	}
	if last[0] != last[1] {
		t.Errorf("progress ended at %d of %d", last[0], last[1])
	}
	return st
}

// volAllocated is the space a file takes on disk.
func volAllocated(t *testing.T, name string) int64 {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Stat(name, &st); err != nil {
		t.Fatal(err)
	}
	return st.Blocks * 512
}

// volSameBytes fails unless a and b hold the same first n bytes.
func volSameBytes(t *testing.T, a, b string, n int64) {
	t.Helper()
	fa, err := os.Open(a)
	if err != nil {
		t.Fatal(err)
	}
	defer fa.Close()
	fb, err := os.Open(b)
	if err != nil {
		t.Fatal(err)
	}
	defer fb.Close()
	ba, bb := make([]byte, 1<<20), make([]byte, 1<<20)
	for off := int64(0); off < n; off += int64(len(ba)) {
		m := min(int64(len(ba)), n-off)
		if _, err := io.ReadFull(io.NewSectionReader(fa, off, m), ba[:m]); err != nil {
			t.Fatalf("read %s at %d: %v", a, off, err)
		}
		if _, err := io.ReadFull(io.NewSectionReader(fb, off, m), bb[:m]); err != nil {
			t.Fatalf("read %s at %d: %v", b, off, err)
		}
		if !bytes.Equal(ba[:m], bb[:m]) {
			for i := range m {
				if ba[i] != bb[i] {
					t.Fatalf("%s and %s differ at %d", a, b, off+i)
				}
			}
		}
	}
}

// volPopulate writes a tree with small files, links, a few MiB of random
// data, and deleted files whose blocks still hold data.
func volPopulate(t *testing.T, root string) {
	t.Helper()
	for i := range 40 {
		volWrite(t, filepath.Join(root, fmt.Sprintf("d%d/e/f%02d", i%4, i)), volRandom(uint64(i), i*997))
	}
	volWrite(t, filepath.Join(root, "big"), volRandom(100, 6<<20))
	volWrite(t, filepath.Join(root, "gone"), volRandom(101, 16<<20))
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.Symlink("d0/e/f00", filepath.Join(root, "link")))
	must(os.Link(filepath.Join(root, "big"), filepath.Join(root, "big.hard")))
	must(os.Chown(filepath.Join(root, "d1/e/f01"), 1234, 5678))
	must(os.Chmod(filepath.Join(root, "d2/e/f02"), 0o600))
	unix.Sync() // the data of the files about to be deleted reaches the image
	must(os.Remove(filepath.Join(root, "gone")))
	for i := 0; i < 40; i += 5 {
		must(os.Remove(filepath.Join(root, fmt.Sprintf("d%d/e/f%02d", i%4, i))))
	}
}

var volFS = []struct {
	name string
	mkfs []string
	// nouuid lets xfs mount a replica while its source, which has the same
	// UUID, is mounted.
	opts string
}{
	{name: "ext4", mkfs: []string{"mkfs.ext4", "-q", "-F"}},
	{name: "xfs", mkfs: []string{"mkfs.xfs", "-q", "-f"}, opts: ",nouuid"},
}

// makeFS makes an image of size bytes holding a new file system.
func makeFS(t *testing.T, mkfs []string, size int64) string {
	t.Helper()
	img := filepath.Join(t.TempDir(), "source.img")
	if err := os.WriteFile(img, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(img, size); err != nil {
		t.Fatal(err)
	}
	volCmd(t, mkfs[0], append(mkfs[1:], img)...)
	return img
}

// volSameTrees mounts both images read-only and compares their trees.
func volSameTrees(t *testing.T, src, tgt, opts string) {
	t.Helper()
	a, umountA := mountImage(t, src, "ro")
	b, umountB := mountImage(t, tgt, "ro"+opts)
	treecmp.AssertEqual(t, a, b, treecmp.Options{Owners: true})
	umountB()
	umountA()
}

func TestSyncVolumeFS(t *testing.T) {
	needRoot(t, "mount", "mkfs.ext4", "dumpe2fs", "mkfs.xfs", "xfs_db", "xfs_logprint")
	const size = 300 << 20
	for _, tt := range volFS {
		t.Run(tt.name, func(t *testing.T) {
			src := makeFS(t, tt.mkfs, size)
			mnt, umount := mountImage(t, src, "rw")
			volPopulate(t, mnt)
			umount()

			tgt := filepath.Join(t.TempDir(), "replica.img")
			o := VolumeOptions{Source: src, Target: tgt}
			st := volSyncT(t, o)
			if !strings.HasPrefix(st.Usage, tt.name+" ") {
				t.Errorf("usage %q: the %s map was not used", st.Usage, tt.name)
			}
			if st.Blocks != size/DefaultBlockSize || st.Unused == 0 || st.Used >= size {
				t.Errorf("blocks %d, unused %d, used %d bytes: want %d blocks, some unused", st.Blocks, st.Unused, st.Used, size/DefaultBlockSize)
			}
			// 6 MiB of live data and metadata; the deleted 16 MiB stay behind.
			if st.BytesSent > size/10 {
				t.Errorf("sent %d bytes of a %d-byte image", st.BytesSent, size)
			}
			if a := volAllocated(t, tgt); a > st.BytesSent+1<<20 {
				t.Errorf("the replica takes %d bytes, more than the %d sent: holes were filled", a, st.BytesSent)
			}
			volSameTrees(t, src, tgt, tt.opts)

			mnt, umount = mountImage(t, src, "rw")
			volWriteAt(t, filepath.Join(mnt, "big"), []byte("changed on the source"), 3<<20)
			umount()
			st = volSyncT(t, o)
			// The changed block, the inode, the superblock and the journal;
			// mounting xfs also restamps about 2 MiB of its log.
			if st.Sent == 0 || st.Sent > 48 || st.Same < 20*st.Sent {
				t.Errorf("after a small change: sent %d blocks, same %d", st.Sent, st.Same)
			}
			volSameTrees(t, src, tgt, tt.opts)

			// The replica is a working file system: file-level replication
			// can continue in it. A volume sync undoes what was written.
			mnt, umount = mountImage(t, tgt, "rw"+tt.opts)
			volWrite(t, filepath.Join(mnt, "on-the-replica"), []byte("written after the volume sync"))
			if b, err := os.ReadFile(filepath.Join(mnt, "on-the-replica")); err != nil || string(b) != "written after the volume sync" {
				t.Errorf("read back from the mounted replica: %q, %v", b, err)
			}
			umount()
			if st = volSyncT(t, o); st.Sent == 0 {
				t.Error("a replica written to was not repaired")
			}
			volSameTrees(t, src, tgt, tt.opts)
		})
	}
}

// TestSyncVolumeSnapshots syncs copies of a mounted file system: a copy
// taken while it is frozen (what an LVM snapshot holds) keeps the free-space
// map in use; a crash-consistent copy, whose journal or log holds
// allocations the map does not show yet, has every block sent.
func TestSyncVolumeSnapshots(t *testing.T) {
	needRoot(t, "mount", "mkfs.ext4", "dumpe2fs", "mkfs.xfs", "xfs_db", "xfs_logprint", "fsfreeze", "cp")
	files := []struct {
		name string
		size int
	}{{"first", 1 << 20}, {"data", 4 << 20}}
	for _, fsys := range volFS {
		for _, frozen := range []bool{true, false} {
			name := fsys.name + " crash-consistent"
			if frozen {
				name = fsys.name + " frozen"
			}
			t.Run(name, func(t *testing.T) {
				src := makeFS(t, fsys.mkfs, 300<<20)
				mnt, umount := mountImage(t, src, "rw")
				defer umount()
				volWrite(t, filepath.Join(mnt, files[0].name), volRandom(0, files[0].size))
				unix.Sync()
				volWrite(t, filepath.Join(mnt, files[1].name), volRandom(1, files[1].size))
				if frozen {
					volCmd(t, "fsfreeze", "--freeze", mnt)
				} else {
					f, err := os.Open(filepath.Join(mnt, "data"))
					if err != nil {
						t.Fatal(err)
					}
					err = f.Sync() // the data is on the image, the log is not checkpointed
					f.Close()
					if err != nil {
						t.Fatal(err)
					}
				}
				snap := filepath.Join(t.TempDir(), "snapshot.img")
				volCmd(t, "cp", "--sparse=always", src, snap)
				if frozen {
					volCmd(t, "fsfreeze", "--unfreeze", mnt)
				}

				// What a frozen xfs leaves in its log is not clean: the
				// superblock updates that cover it.
				if fsys.name == "xfs" && frozen && !strings.Contains(volCmd(t, "xfs_logprint", "-t", snap), "state: <DIRTY>") {
					t.Error("the log of a frozen xfs is clean: the covered log is not exercised")
				}
				tgt := filepath.Join(t.TempDir(), "replica.img")
				st := volSyncT(t, VolumeOptions{Source: snap, Target: tgt})
				wantAll := !frozen
				if all := strings.HasPrefix(st.Usage, "every block"); all != wantAll || (st.Unused == 0) != wantAll {
					t.Errorf("usage %q, %d blocks unused", st.Usage, st.Unused)
				}
				// Mounting replays the journal or log copied with the blocks.
				r, umountR := mountImage(t, tgt, "rw"+fsys.opts)
				for i, f := range files {
					b, err := os.ReadFile(filepath.Join(r, f.name))
					if err != nil || !bytes.Equal(b, volRandom(uint64(i), f.size)) {
						t.Errorf("%s on the replica: %d bytes, %v", f.name, len(b), err)
					}
				}
				umountR()
			})
		}
	}
}

func TestSyncVolumeRaw(t *testing.T) {
	const bs = DefaultBlockSize
	const size = 48<<20 + 12345 // the last block is short
	dir := t.TempDir()
	src := filepath.Join(dir, "sparse.img")
	f, err := os.Create(src)
	if err != nil {
		t.Fatal(err)
	}
	dataBlocks := map[int64]bool{}
	for i, w := range []struct{ off, n int64 }{
		{0, 100 << 10},
		{10<<20 + 3000, 200 << 10},
		{30 << 20, bs},
		{size - 5000, 5000},
	} {
		if _, err := f.WriteAt(volRandom(uint64(i), int(w.n)), w.off); err != nil {
			t.Fatal(err)
		}
		for b := w.off / bs; b <= (w.off+w.n-1)/bs; b++ {
			dataBlocks[b] = true
		}
	}
	f.Close()
	blocks := int64((size + bs - 1) / bs)
	want := int64(len(dataBlocks))
	dataBytes := want*bs - (bs - size%bs) // the last block is one of them

	tgt := filepath.Join(dir, "replica.img")
	o := VolumeOptions{Source: src, Target: tgt, FSType: "raw"}
	check := func(t *testing.T, st VolumeStats, same, sent, bytesSent int64) {
		t.Helper()
		if st.Blocks != blocks || st.Unused != blocks-want || st.Same != same || st.Sent != sent || st.BytesSent != bytesSent {
			t.Errorf("got %+v, want %d blocks, %d unused, %d same, %d sent, %d bytes", st, blocks, blocks-want, same, sent, bytesSent)
		}
		volSameBytes(t, src, tgt, size)
		if a := volAllocated(t, tgt); a > want*bs {
			t.Errorf("the replica takes %d bytes, more than its %d data blocks", a, want)
		}
	}

	t.Run("fresh target", func(t *testing.T) {
		st := volSyncT(t, o)
		check(t, st, 0, want, dataBytes)
		if !strings.Contains(st.Usage, "SEEK_DATA") {
			t.Errorf("usage %q", st.Usage)
		}
	})
	t.Run("unchanged", func(t *testing.T) {
		check(t, volSyncT(t, o), want, 0, want*HashSize)
	})
	t.Run("target full of other data", func(t *testing.T) {
		if err := os.WriteFile(tgt, volRandom(9, size), 0o600); err != nil {
			t.Fatal(err)
		}
		// Holes of the source are punched, not compared.
		check(t, volSyncT(t, o), 0, want, dataBytes+want*HashSize)
	})
	t.Run("blocks larger than a copy", func(t *testing.T) {
		// 1.5 MiB blocks: a block larger than one read of differing
		// blocks, and a size no power of two.
		o := o
		o.BlockSize = 3 << 19
		o.Target = filepath.Join(t.TempDir(), "replica.img")
		for _, fill := range []bool{false, true} {
			if fill {
				if err := os.WriteFile(o.Target, volRandom(11, size), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			st := volSyncT(t, o)
			if st.Blocks != (size+3<<19-1)/(3<<19) || st.Sent == 0 || st.Same != 0 {
				t.Errorf("target filled first %v: got %+v", fill, st)
			}
			volSameBytes(t, src, o.Target, size)
		}
	})
	t.Run("block device target", func(t *testing.T) {
		needRoot(t, "losetup")
		img := filepath.Join(t.TempDir(), "device.img")
		if err := os.WriteFile(img, volRandom(10, 49<<20), 0o600); err != nil {
			t.Fatal(err)
		}
		dev := volLoop(t, img)
		o := VolumeOptions{Source: src, Target: dev, FSType: "raw"}
		// A device cannot punch holes: the source's holes are compared too.
		st := volSyncT(t, o)
		if st.Unused != 0 || st.Sent != blocks || st.BytesSent != size+blocks*HashSize {
			t.Errorf("got %+v: want every one of %d blocks sent", st, blocks)
		}
		volSameBytes(t, src, dev, size)
		if st = volSyncT(t, o); st.Same != blocks {
			t.Errorf("again: got %+v, want %d blocks the same", st, blocks)
		}
	})
}

func TestSyncVolumeBadInput(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "source.img")
	if err := os.WriteFile(src, volRandom(1, 2<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		root   bool
		o      func(t *testing.T) VolumeOptions
		want   string
		target error // errors.Is the result
	}{
		{
			name:   "missing source",
			o:      func(t *testing.T) VolumeOptions { return VolumeOptions{Source: dir + "/nothing", Target: dir + "/t1"} },
			want:   dir + "/nothing",
			target: fs.ErrNotExist,
		},
		{
			name: "source is a directory",
			o:    func(t *testing.T) VolumeOptions { return VolumeOptions{Source: dir, Target: dir + "/t2"} },
			want: dir + " is a directory",
		},
		{
			name: "target is a directory",
			o:    func(t *testing.T) VolumeOptions { return VolumeOptions{Source: src, Target: t.TempDir()} },
			want: "is a directory",
		},
		{
			name: "target is the source",
			o:    func(t *testing.T) VolumeOptions { return VolumeOptions{Source: src, Target: src} },
			want: src + " is the source",
		},
		{
			name: "unknown file-system type",
			o: func(t *testing.T) VolumeOptions {
				return VolumeOptions{Source: src, Target: t.TempDir() + "/t", FSType: "ntfs"}
			},
			want: `type "ntfs"`,
		},
		{
			name: "not an ext4 file system",
			o: func(t *testing.T) VolumeOptions {
				return VolumeOptions{Source: src, Target: t.TempDir() + "/t", FSType: "ext4"}
			},
			want: "ext4 map of " + src,
		},
		{
			name: "negative block size",
			o: func(t *testing.T) VolumeOptions {
				return VolumeOptions{Source: src, Target: t.TempDir() + "/t", BlockSize: -1}
			},
			want: "block size -1",
		},
		{
			name: "smaller block device",
			root: true,
			o: func(t *testing.T) VolumeOptions {
				img := filepath.Join(t.TempDir(), "small.img")
				if err := os.WriteFile(img, make([]byte, 1<<20), 0o600); err != nil {
					t.Fatal(err)
				}
				return VolumeOptions{Source: src, Target: volLoop(t, img)}
			},
			want: "holds 1048576 bytes, smaller than the 2097152 of the source",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.root {
				needRoot(t, "losetup")
			}
			_, err := SyncVolume(context.Background(), tt.o(t))
			if err == nil || !strings.HasPrefix(err.Error(), "resync: volume ") || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got %v, want an error with %q", err, tt.want)
			}
			if tt.target != nil && !errors.Is(err, tt.target) {
				t.Errorf("%v is not %v", err, tt.target)
			}
		})
	}
}
