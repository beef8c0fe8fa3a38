//go:build linux

package snapshot

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/writecap/writecap/internal/treecmp"
	"golang.org/x/sys/unix"
)

const fiemapExtentShared = 0x2000

// shared reports whether every extent of the file name is shared with
// another file: whether it is a reflink.
func shared(t *testing.T, name string) bool {
	t.Helper()
	f, err := os.Open(name)
	must(t, err)
	defer f.Close()
	es, err := extents(f)
	must(t, err)
	if len(es) == 0 {
		t.Fatalf("%s has no extents", name)
	}
	for _, e := range es {
		if e.flags&fiemapExtentShared == 0 {
			return false
		}
	}
	return true
}

// sharedBytes returns how many bytes of the file name are in extents shared
// with another file.
func sharedBytes(t *testing.T, name string) int64 {
	t.Helper()
	f, err := os.Open(name)
	must(t, err)
	defer f.Close()
	es, err := extents(f)
	must(t, err)
	var n int64
	for _, e := range es {
		if e.flags&fiemapExtentShared != 0 {
			n += int64(e.length)
		}
	}
	return n
}

// names lists dir.
func names(t *testing.T, dir string) []string {
	t.Helper()
	ns, err := readNames(dir)
	must(t, err)
	slices.Sort(ns)
	return ns
}

// freezeSetup makes a filesystem of type fstype with fill's tree in its
// directory data, and a freeze provider with its staging directory (the
// default when staging is "").
func freezeSetup(t *testing.T, fstype string, opts Options) (mnt, dir, staging string, p *freeze) {
	t.Helper()
	mnt = loopFS(t, fstype)
	dir = filepath.Join(mnt, "data")
	must(t, os.Mkdir(dir, 0o755))
	fill(t, dir)
	staging = opts.Staging
	if staging == "" {
		staging = filepath.Join(mnt, StagingName)
	}
	return mnt, dir, staging, newFreeze(opts)
}

func TestFreezeTake(t *testing.T) {
	for _, tc := range []struct {
		name         string
		fstype       string
		otherStaging bool // staging on another filesystem: block copies
		top          bool // dir is the top of the filesystem, so holds staging
		nested       bool // dir holds a btrfs subvolume, which comes out empty
		wantReflink  bool
	}{
		{name: "ext4", fstype: "ext4"},
		{name: "xfs", fstype: "xfs", wantReflink: true},
		{name: "btrfs", fstype: "btrfs", wantReflink: true},
		{name: "btrfs with a nested subvolume", fstype: "btrfs", nested: true, wantReflink: true},
		{name: "xfs staging elsewhere", fstype: "xfs", otherStaging: true},
		{name: "xfs top of filesystem", fstype: "xfs", top: true, wantReflink: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mnt := loopFS(t, tc.fstype)
			dir := filepath.Join(mnt, "data")
			staging := filepath.Join(mnt, StagingName)
			var opts Options
			switch {
			case tc.otherStaging:
				staging = t.TempDir()
				opts.Staging = staging
			case tc.top:
				dir = mnt
				// Made before fill sets the times of dir.
				must(t, os.Mkdir(staging, 0o700))
			}
			must(t, os.MkdirAll(dir, 0o755))
			if tc.nested {
				run(t, "btrfs", "subvolume", "create", filepath.Join(dir, "sub"))
				must(t, os.WriteFile(filepath.Join(dir, "sub/x"), []byte("x"), 0o644))
			}
			fill(t, dir)

			s, err := newFreeze(opts).Take(context.Background(), dir)
			must(t, err)
			assertThawed(t, mnt)
			if s.Provider != "freeze" || s.Dir != dir || s.Created.IsZero() || filepath.Dir(s.Path) != staging {
				t.Errorf("snapshot %+v; want provider freeze, dir %s, a time, a path in %s", s, dir, staging)
			}
			if got := names(t, staging); !slices.Equal(got, []string{filepath.Base(s.Path)}) {
				t.Errorf("staging holds %q; want only the snapshot", got)
			}
			assertFilled(t, s.Path)
			assertMissing(t, s.Path, StagingName)
			if tc.nested {
				if got := names(t, filepath.Join(s.Path, "sub")); len(got) != 0 {
					t.Errorf("the nested subvolume holds %q in the snapshot; want it empty", got)
				}
			}
			if got := shared(t, filepath.Join(s.Path, "d/big")); got != tc.wantReflink {
				t.Errorf("d/big in the snapshot is a reflink: %v; want %v", got, tc.wantReflink)
			}

			change(t, dir)
			assertChanged(t, dir)
			assertFilled(t, s.Path)

			must(t, s.Release(context.Background()))
			assertMissing(t, s.Path, ".")
			must(t, s.Release(context.Background()))
		})
	}
}

// TestFreezeChangeWhileCopying changes the tree after the copies and before
// the freeze: the snapshot shows the tree as it was frozen, and a file with
// one block rewritten keeps sharing the rest with its reflink. Without the
// racy window only ctimes tell the changed files (this kernel has
// fine-grained ones); with it, every file of this young tree is compared.
func TestFreezeChangeWhileCopying(t *testing.T) {
	for _, tc := range []struct {
		name    string
		fstype  string
		racy    bool // the default racy window, not 0
		reflink bool
	}{
		{name: "ext4", fstype: "ext4"},
		{name: "xfs", fstype: "xfs", reflink: true},
		{name: "btrfs", fstype: "btrfs", reflink: true},
		{name: "ext4 racy", fstype: "ext4", racy: true},
		{name: "xfs racy", fstype: "xfs", racy: true, reflink: true},
		{name: "btrfs racy", fstype: "btrfs", racy: true, reflink: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mnt, dir, _, p := freezeSetup(t, tc.fstype, Options{})
			if !tc.racy {
				p.racy = 0
			}
			const off = 1<<20 + 8192
			freezes := 0
			p.beforeFreeze = func() {
				freezes++
				f, err := os.OpenFile(filepath.Join(dir, "d/big"), os.O_WRONLY, 0)
				must(t, err)
				_, err = f.WriteAt(pattern(4096, 9), off)
				must(t, err)
				must(t, f.Close())
				f, err = os.OpenFile(filepath.Join(dir, "d/link"), os.O_WRONLY|os.O_APPEND, 0)
				must(t, err)
				_, err = f.WriteString(" two")
				must(t, err)
				must(t, f.Close())
				must(t, os.WriteFile(filepath.Join(dir, "new"), []byte("new"), 0o644))
				must(t, os.Remove(filepath.Join(dir, "d/e/empty")))
				must(t, os.Rename(filepath.Join(dir, "fifo"), filepath.Join(dir, "d/e/fifo")))
				must(t, os.Link(filepath.Join(dir, "d/big"), filepath.Join(dir, "big2")))
			}
			s, err := p.Take(context.Background(), dir)
			must(t, err)
			assertThawed(t, mnt)
			if freezes != 1 {
				t.Errorf("%d freezes; want 1", freezes)
			}
			treecmp.AssertEqual(t, dir, s.Path, treecmp.Options{Owners: true})
			big := pattern(3<<20, 1)
			copy(big[off:], pattern(4096, 9))
			assertContent(t, s.Path, map[string][]byte{"d/big": big, "big2": big, "f": []byte("one two"), "new": []byte("new")})
			if n := sharedBytes(t, filepath.Join(s.Path, "d/big")); tc.reflink && n < 3<<20-256<<10 {
				t.Errorf("d/big in the snapshot shares %d bytes with the live file; want all but the rewritten block", n)
			}
			must(t, s.Release(context.Background()))
		})
	}
}

// TestFreezeNoCOW: btrfs clones a nodatacow file only to another one.
func TestFreezeNoCOW(t *testing.T) {
	mnt, dir, _, p := freezeSetup(t, "btrfs", Options{})
	name := filepath.Join(dir, "nocow")
	f, err := os.Create(name)
	must(t, err)
	must(t, unix.IoctlSetPointerInt(int(f.Fd()), unix.FS_IOC_SETFLAGS, fsNoCOW))
	_, err = f.Write(pattern(1<<20, 3))
	must(t, err)
	must(t, f.Close())

	s, err := p.Take(context.Background(), dir)
	must(t, err)
	assertThawed(t, mnt)
	if !shared(t, filepath.Join(s.Path, "nocow")) {
		t.Error("the nodatacow file was not reflinked")
	}
	assertContent(t, s.Path, map[string][]byte{"nocow": pattern(1<<20, 3)})
	must(t, s.Release(context.Background()))
}

// TestFreezeHoldRetry: when more changed during the copies than may be read
// while frozen, the changed files are copied again and the freeze retried.
func TestFreezeHoldRetry(t *testing.T) {
	for _, fstype := range []string{"ext4", "xfs"} {
		t.Run(fstype, func(t *testing.T) {
			mnt, dir, _, p := freezeSetup(t, fstype, Options{FreezeHold: 64 << 10})
			freezes := 0
			p.beforeFreeze = func() {
				freezes++
				if freezes == 1 {
					must(t, os.WriteFile(filepath.Join(dir, "d/big"), pattern(3<<20, 5), 0o600))
				}
			}
			s, err := p.Take(context.Background(), dir)
			must(t, err)
			assertThawed(t, mnt)
			if freezes != 2 {
				t.Errorf("%d freezes; want 2", freezes)
			}
			assertContent(t, s.Path, map[string][]byte{"d/big": pattern(3<<20, 5), "f": []byte("one")})
			must(t, s.Release(context.Background()))
		})
	}
}

// TestFreezeFailures: whatever makes Take fail, the filesystem is thawed
// and staging holds nothing of it.
func TestFreezeFailures(t *testing.T) {
	for _, tc := range []struct {
		name       string
		opts       Options
		before     func(t *testing.T, dir string, round int) // before each freeze
		while      func(t *testing.T, mnt string, cancel context.CancelFunc)
		wantErr    string
		wantIs     error
		wantRounds int // freezes tried; 0: not checked
	}{
		{
			name: "keeps changing",
			opts: Options{FreezeHold: 64 << 10},
			before: func(t *testing.T, dir string, round int) {
				must(t, os.WriteFile(filepath.Join(dir, "d/big"), pattern(3<<20, byte(round)), 0o600))
			},
			wantErr:    "kept changing",
			wantIs:     errOverHold,
			wantRounds: freezeRounds,
		},
		{
			name:   "cancelled while frozen",
			while:  func(t *testing.T, mnt string, cancel context.CancelFunc) { cancel() },
			wantIs: context.Canceled,
		},
		{
			// A write to the frozen filesystem, as by a bug, blocks until
			// the watchdog thaws.
			name: "stuck while frozen",
			opts: Options{FreezeTimeout: 200e6},
			while: func(t *testing.T, mnt string, cancel context.CancelFunc) {
				must(t, os.WriteFile(filepath.Join(mnt, "stuck"), []byte("x"), 0o644))
			},
			wantErr: "frozen for longer than 200ms",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mnt, dir, staging, p := freezeSetup(t, "xfs", tc.opts)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			round := 0
			if tc.before != nil {
				p.beforeFreeze = func() {
					round++
					tc.before(t, dir, round)
				}
			}
			if tc.while != nil {
				p.whileFrozen = func() { tc.while(t, mnt, cancel) }
			}
			s, err := p.Take(ctx, dir)
			if s != nil {
				t.Errorf("Take returned a snapshot: %+v", s)
			}
			assertError(t, err, dir, tc.wantErr)
			if tc.wantIs != nil && !errors.Is(err, tc.wantIs) {
				t.Errorf("error %v is not %v", err, tc.wantIs)
			}
			if tc.wantRounds != 0 && round != tc.wantRounds {
				t.Errorf("%d freezes; want %d", round, tc.wantRounds)
			}
			assertThawed(t, mnt)
			if got := names(t, staging); len(got) != 0 {
				t.Errorf("staging holds %q after a failure", got)
			}
		})
	}
}

// TestFreezeFrozenAlready: a filesystem frozen by someone else is left
// frozen, for them to thaw.
func TestFreezeFrozenAlready(t *testing.T) {
	mnt, dir, staging, p := freezeSetup(t, "xfs", Options{})
	// Made first: making it would wait for the thaw.
	must(t, os.Mkdir(staging, 0o700))
	run(t, "fsfreeze", "-f", mnt)
	s, err := p.Take(context.Background(), dir)
	if s != nil {
		t.Errorf("Take returned a snapshot: %+v", s)
	}
	assertError(t, err, dir, "frozen already")
	fd, err := unix.Open(mnt, unix.O_RDONLY|unix.O_DIRECTORY, 0)
	must(t, err)
	defer unix.Close(fd)
	if err := unix.IoctlSetInt(fd, fiFreeze, 0); !errors.Is(err, unix.EBUSY) {
		t.Errorf("FIFREEZE after Take: %v; want EBUSY, still frozen", err)
	}
	run(t, "fsfreeze", "-u", mnt)
	assertThawed(t, mnt)
	if got := names(t, staging); len(got) != 0 {
		t.Errorf("staging holds %q after a failure", got)
	}
}

func TestFreezeUnsupported(t *testing.T) {
	dir := loopFS(t, "tmpfs")
	_, err := newFreeze(Options{}).Take(context.Background(), dir)
	assertError(t, err, dir, "tmpfs")
}
