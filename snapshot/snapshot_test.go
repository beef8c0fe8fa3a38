//go:build linux

package snapshot

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// skipOrFail skips the test for why, unless WRITECAP_REQUIRE_BPF=1 demands
// that every test runs.
func skipOrFail(t *testing.T, why string) {
	t.Helper()
	if os.Getenv("WRITECAP_REQUIRE_BPF") == "1" {
		t.Fatalf("WRITECAP_REQUIRE_BPF=1 but this test cannot run: %s", why)
	}
	t.Skip(why)
}

func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		skipOrFail(t, "needs root")
	}
}

func run(t *testing.T, name string, args ...string) {
	t.Helper()
	if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
}

// loopFS makes a filesystem of type fstype (ext4, xfs, btrfs, or tmpfs,
// which needs no image) in the test's temporary directory, mounts it and
// returns the mountpoint; it is unmounted when the test ends.
func loopFS(t *testing.T, fstype string) string {
	t.Helper()
	requireRoot(t)
	dir := t.TempDir()
	mnt := filepath.Join(dir, "mnt")
	if err := os.Mkdir(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	if fstype == "tmpfs" {
		run(t, "mount", "-t", "tmpfs", "tmpfs", mnt)
	} else {
		mkfs := "mkfs." + fstype
		if _, err := exec.LookPath(mkfs); err != nil {
			skipOrFail(t, mkfs+" not installed")
		}
		img := filepath.Join(dir, "img")
		// 512 MiB, sparse: xfs wants at least 300 MiB.
		if err := os.WriteFile(img, nil, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Truncate(img, 512<<20); err != nil {
			t.Fatal(err)
		}
		force := map[string]string{"ext4": "-F", "xfs": "-f", "btrfs": "-f"}[fstype]
		run(t, mkfs, "-q", force, img)
		run(t, "mount", "-o", "loop", img, mnt)
	}
	t.Cleanup(func() {
		// A failed test must not leave it frozen: that would hang umount
		// and everything writing to it. Not frozen: EINVAL, ignored.
		_ = exec.Command("fsfreeze", "-u", mnt).Run()
		if out, err := exec.Command("umount", mnt).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v\n%s", mnt, err, out)
		}
	})
	return mnt
}

// assertThawed fails t if the filesystem holding dir is frozen, without
// blocking (a write would block until thawed), then shows that a write to it
// succeeds.
func assertThawed(t *testing.T, dir string) {
	t.Helper()
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	if err := unix.IoctlSetInt(fd, fiFreeze, 0); err != nil {
		t.Fatalf("%s: FIFREEZE: %v (EBUSY: still frozen)", dir, err)
	}
	if err := unix.IoctlSetInt(fd, fiThaw, 0); err != nil {
		t.Fatalf("%s: FITHAW: %v", dir, err)
	}
	if err := os.WriteFile(filepath.Join(dir, "written-after"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(dir, "written-after")); err != nil {
		t.Fatal(err)
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// pattern returns n bytes that differ with seed and position.
func pattern(n int, seed byte) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7+i/4096) ^ seed
	}
	return b
}

// oldTime is set on everything fill writes, so that a copy that forgot
// times shows.
var oldTime = time.Date(2001, 2, 3, 4, 5, 6, 7000, time.UTC)

// fill writes the tree the tests take snapshots of under root: files with
// their own modes and owners, a larger file, a hard link, a symlink, a fifo,
// a device node and a nested directory, all with times in the past.
func fill(t *testing.T, root string) {
	t.Helper()
	must(t, os.MkdirAll(filepath.Join(root, "d/e"), 0o755))
	must(t, os.WriteFile(filepath.Join(root, "f"), []byte("one"), 0o644))
	must(t, os.WriteFile(filepath.Join(root, "d/big"), pattern(3<<20, 1), 0o600))
	must(t, os.WriteFile(filepath.Join(root, "d/e/empty"), nil, 0o644))
	must(t, os.Link(filepath.Join(root, "f"), filepath.Join(root, "d/link")))
	must(t, os.Symlink("../f", filepath.Join(root, "d/sym")))
	must(t, unix.Mkfifo(filepath.Join(root, "fifo"), 0o640))
	must(t, unix.Mknod(filepath.Join(root, "d/null"), unix.S_IFCHR|0o600, int(unix.Mkdev(1, 3))))
	must(t, unix.Chmod(filepath.Join(root, "f"), 0o4751))
	must(t, os.Chown(filepath.Join(root, "d/big"), 1234, 5678))
	must(t, os.Lchown(filepath.Join(root, "d/sym"), 1234, 5678))
	must(t, os.Chmod(filepath.Join(root, "d/e"), 0o750))
	ts := []unix.Timespec{unix.NsecToTimespec(oldTime.UnixNano()), unix.NsecToTimespec(oldTime.UnixNano())}
	for _, p := range []string{"d/sym", "fifo", "f", "d/big", "d/e/empty", "d/e", "d", "."} {
		must(t, unix.UtimesNanoAt(unix.AT_FDCWD, filepath.Join(root, p), ts, unix.AT_SYMLINK_NOFOLLOW))
	}
}

// change rewrites the tree fill wrote: a file extended through one of its
// names, another file replaced, a file added and one removed.
func change(t *testing.T, root string) {
	t.Helper()
	f, err := os.OpenFile(filepath.Join(root, "d/link"), os.O_WRONLY|os.O_APPEND, 0)
	must(t, err)
	_, err = f.WriteString(" two")
	must(t, err)
	must(t, f.Close())
	must(t, os.WriteFile(filepath.Join(root, "d/big"), pattern(1<<20, 2), 0o600))
	must(t, os.WriteFile(filepath.Join(root, "new"), []byte("new"), 0o644))
	must(t, os.Remove(filepath.Join(root, "d/e/empty")))
}

// assertFilled checks that root holds the tree of fill, unchanged.
func assertFilled(t *testing.T, root string) {
	t.Helper()
	assertContent(t, root, map[string][]byte{"f": []byte("one"), "d/link": []byte("one"), "d/big": pattern(3<<20, 1), "d/e/empty": nil})
	assertMissing(t, root, "new")
	if target, err := os.Readlink(filepath.Join(root, "d/sym")); err != nil || target != "../f" {
		t.Errorf("%s/d/sym: %q, %v; want a symlink to ../f", root, target, err)
	}
	var a, b unix.Stat_t
	must(t, unix.Lstat(filepath.Join(root, "f"), &a))
	must(t, unix.Lstat(filepath.Join(root, "d/link"), &b))
	if a.Ino != b.Ino || a.Nlink != 2 {
		t.Errorf("%s: f and d/link are not one file with two links (inodes %d, %d; %d links)", root, a.Ino, b.Ino, a.Nlink)
	}
	for _, c := range []struct {
		name     string
		mode     uint32
		uid, gid uint32
	}{
		{"f", unix.S_IFREG | 0o4751, 0, 0},
		{"d/big", unix.S_IFREG | 0o600, 1234, 5678},
		{"d/sym", unix.S_IFLNK | 0o777, 1234, 5678},
		{"d/e", unix.S_IFDIR | 0o750, 0, 0},
		{"fifo", unix.S_IFIFO | 0o640, 0, 0},
		{"d/null", unix.S_IFCHR | 0o600, 0, 0},
	} {
		var st unix.Stat_t
		must(t, unix.Lstat(filepath.Join(root, c.name), &st))
		if st.Mode != c.mode || st.Uid != c.uid || st.Gid != c.gid {
			t.Errorf("%s/%s: mode %o owner %d:%d; want mode %o owner %d:%d", root, c.name, st.Mode, st.Uid, st.Gid, c.mode, c.uid, c.gid)
		}
	}
	var null unix.Stat_t
	must(t, unix.Lstat(filepath.Join(root, "d/null"), &null))
	if null.Rdev != unix.Mkdev(1, 3) {
		t.Errorf("%s/d/null: device %#x; want 1:3", root, null.Rdev)
	}
	for _, p := range []string{"d/sym", "fifo", "f", "d/big", "d/e", "d", "."} {
		var st unix.Stat_t
		must(t, unix.Lstat(filepath.Join(root, p), &st))
		if got := time.Unix(st.Mtim.Unix()); !got.Equal(oldTime) {
			t.Errorf("%s/%s: mtime %v; want %v", root, p, got.UTC(), oldTime)
		}
	}
}

// assertChanged checks that root holds the tree of fill after change.
func assertChanged(t *testing.T, root string) {
	t.Helper()
	assertContent(t, root, map[string][]byte{"f": []byte("one two"), "d/big": pattern(1<<20, 2), "new": []byte("new")})
	assertMissing(t, root, "d/e/empty")
}

func assertContent(t *testing.T, root string, want map[string][]byte) {
	t.Helper()
	for name, w := range want {
		got, err := os.ReadFile(filepath.Join(root, name))
		if err != nil {
			t.Error(err)
			continue
		}
		if !bytes.Equal(got, w) {
			t.Errorf("%s/%s: %d bytes, not the %d expected", root, name, len(got), len(w))
		}
	}
}

func assertMissing(t *testing.T, root, name string) {
	t.Helper()
	if _, err := os.Lstat(filepath.Join(root, name)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("%s/%s: %v; want it missing", root, name, err)
	}
}

// assertError fails t unless err is a snapshot error containing each of
// want.
func assertError(t *testing.T, err error, want ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("no error; want one containing %q", want)
	}
	if !strings.HasPrefix(err.Error(), "snapshot: ") {
		t.Errorf("error %q lacks the snapshot: prefix", err)
	}
	for _, w := range want {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q does not contain %q", err, w)
		}
	}
}

func TestByName(t *testing.T) {
	for _, tc := range []struct {
		name string
		want string // provider name; "" for an error
	}{
		{"btrfs", "btrfs"},
		{"freeze", "freeze"},
		{"lvm", "lvm"},
		{"vss", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := ByName(tc.name, Options{})
			if tc.want == "" {
				assertError(t, err, `"vss"`)
				return
			}
			if err != nil || p.Name() != tc.want {
				t.Fatalf("ByName(%q) = %v, %v", tc.name, p, err)
			}
		})
	}
}

func TestDetect(t *testing.T) {
	requireRoot(t)
	for _, tc := range []struct {
		name    string
		fstype  string
		subvol  bool   // dir is a btrfs subvolume
		want    string // provider name; "" for an error
		wantErr string
	}{
		{name: "btrfs subvolume", fstype: "btrfs", subvol: true, want: "btrfs"},
		{name: "btrfs directory", fstype: "btrfs", want: "freeze"},
		{name: "xfs", fstype: "xfs", want: "freeze"},
		{name: "ext4", fstype: "ext4", want: "freeze"},
		{name: "tmpfs", fstype: "tmpfs", wantErr: "tmpfs"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := filepath.Join(loopFS(t, tc.fstype), "data")
			if tc.subvol {
				run(t, "btrfs", "subvolume", "create", dir)
			} else {
				must(t, os.Mkdir(dir, 0o755))
			}
			p, err := Detect(dir, Options{})
			if tc.wantErr != "" {
				assertError(t, err, dir, tc.wantErr)
				return
			}
			if err != nil || p.Name() != tc.want {
				t.Fatalf("Detect(%s) = %v, %v; want %s", dir, p, err, tc.want)
			}
		})
	}
}

// TestTakeMissingDir: every provider names a directory that is not there.
func TestTakeMissingDir(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "missing")
	for _, name := range []string{"btrfs", "freeze", "lvm"} {
		t.Run(name, func(t *testing.T) {
			p, err := ByName(name, Options{})
			must(t, err)
			s, err := p.Take(context.Background(), dir)
			if s != nil {
				t.Errorf("Take returned a snapshot: %+v", s)
			}
			assertError(t, err, dir)
			if !errors.Is(err, os.ErrNotExist) {
				t.Errorf("error %v is not os.ErrNotExist", err)
			}
		})
	}
}
