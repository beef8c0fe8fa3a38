//go:build linux

package snapshot

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// fakeRunner stands in for lvs, lvcreate, lvremove, mount and umount. This
// machine has no device-mapper, so no LVM snapshot can be made here: the
// LVM tests check the exact command lines the provider issues, in order,
// and what it does when one fails.
type fakeRunner struct {
	calls  []string          // the command lines run
	out    map[string]string // a command's standard output, by name
	fail   map[string]int    // how many more times a command fails, by name
	before func(name string) // runs before each command
}

func (f *fakeRunner) run(ctx context.Context, name string, args ...string) ([]byte, error) {
	line := strings.Join(append([]string{name}, args...), " ")
	f.calls = append(f.calls, line)
	if f.before != nil {
		f.before(name)
	}
	if f.fail[name] > 0 {
		f.fail[name]--
		return nil, fmt.Errorf("snapshot: %s: exit status 5: it failed", line)
	}
	return []byte(f.out[name]), nil
}

// lvmSetup returns an LVM provider whose commands go to a fake and whose
// mount table puts dir on the logical volume vg0/data, mounted with the
// filesystem type fstype, showing the volume's directory root. Its
// snapshots are named writecap-test.
func lvmSetup(t *testing.T, fstype, root string, opts Options) (l *lvm, fake *fakeRunner, dir, mnt string) {
	t.Helper()
	point := t.TempDir()
	dir = filepath.Join(point, "app")
	must(t, os.Mkdir(dir, 0o755))
	if opts.Staging == "" {
		opts.Staging = t.TempDir()
	}
	fake = &fakeRunner{out: map[string]string{"lvs": "  vg0 data\n"}, fail: map[string]int{}}
	l = newLVM(opts)
	l.run = fake
	l.newName = func() string { return "writecap-test" }
	l.mounts = func() ([]mount, error) {
		return []mount{
			{Root: "/", Point: "/", FSType: "ext4", Source: "/dev/vda"},
			{Root: root, Point: point, FSType: fstype, Source: "/dev/mapper/vg0-data"},
		}, nil
	}
	return l, fake, dir, filepath.Join(opts.Staging, "writecap-test")
}

func assertCalls(t *testing.T, fake *fakeRunner, want ...string) {
	t.Helper()
	if !slices.Equal(fake.calls, want) {
		t.Errorf("commands:\n\t%s\nwant:\n\t%s", strings.Join(fake.calls, "\n\t"), strings.Join(want, "\n\t"))
	}
	fake.calls = nil
}

// withMnt puts the snapshot's mountpoint in place of MNT in command lines.
func withMnt(calls []string, mnt string) []string {
	var out []string
	for _, c := range calls {
		out = append(out, strings.ReplaceAll(c, "MNT", mnt))
	}
	return out
}

func TestLVMTake(t *testing.T) {
	for _, tc := range []struct {
		name      string
		fstype    string
		root      string // of the mount, as in mountinfo
		size      string // Options.LVMSize
		wantSize  string
		wantOpts  string
		wantUnder string // Path relative to the snapshot's mountpoint
	}{
		{name: "xfs", fstype: "xfs", root: "/", wantSize: "1G", wantOpts: "ro,nouuid", wantUnder: "app"},
		{name: "ext4", fstype: "ext4", root: "/", wantSize: "1G", wantOpts: "ro", wantUnder: "app"},
		{name: "size", fstype: "ext4", root: "/", size: "5G", wantSize: "5G", wantOpts: "ro", wantUnder: "app"},
		{name: "bind mount", fstype: "xfs", root: "/exports", wantSize: "1G", wantOpts: "ro,nouuid", wantUnder: "exports/app"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l, fake, dir, mnt := lvmSetup(t, tc.fstype, tc.root, Options{LVMSize: tc.size})
			s, err := l.Take(context.Background(), dir)
			must(t, err)
			assertCalls(t, fake,
				"lvs --noheadings -o vg_name,lv_name /dev/mapper/vg0-data",
				"lvcreate --snapshot --name writecap-test --size "+tc.wantSize+" vg0/data",
				"mount -o "+tc.wantOpts+" -t "+tc.fstype+" /dev/vg0/writecap-test "+mnt,
			)
			if want := filepath.Join(mnt, tc.wantUnder); s.Path != want || s.Provider != "lvm" || s.Dir != dir || s.Created.IsZero() {
				t.Errorf("snapshot %+v; want path %s, provider lvm, dir %s, a time", s, want, dir)
			}
			if fi, err := os.Stat(mnt); err != nil || !fi.IsDir() {
				t.Errorf("mountpoint %s: %v", mnt, err)
			}

			must(t, s.Release(context.Background()))
			assertCalls(t, fake, "umount "+mnt, "lvremove -f vg0/writecap-test")
			assertMissing(t, mnt, ".")
			must(t, s.Release(context.Background()))
			assertCalls(t, fake)
		})
	}
}

func TestLVMTakeFailures(t *testing.T) {
	const (
		lvs      = "lvs --noheadings -o vg_name,lv_name /dev/mapper/vg0-data"
		lvcreate = "lvcreate --snapshot --name writecap-test --size 1G vg0/data"
		lvremove = "lvremove -f vg0/writecap-test"
	)
	for _, tc := range []struct {
		name      string
		lvsOut    string
		fail      []string
		cancelOn  string // the command during which ctx is cancelled
		wantCalls []string
		wantErr   []string
	}{
		{
			name:      "not a logical volume",
			fail:      []string{"lvs"},
			wantCalls: []string{lvs},
			wantErr:   []string{"/dev/mapper/vg0-data, not a logical volume", "it failed"},
		},
		{
			name:      "lvs prints nothing",
			lvsOut:    "\n",
			wantCalls: []string{lvs},
			wantErr:   []string{"lvs printed"},
		},
		{
			name:      "lvcreate fails",
			fail:      []string{"lvcreate"},
			wantCalls: []string{lvs, lvcreate},
			wantErr:   []string{"lvcreate --snapshot"},
		},
		{
			name:      "cancelled during lvcreate",
			fail:      []string{"lvcreate"},
			cancelOn:  "lvcreate",
			wantCalls: []string{lvs, lvcreate, lvremove},
			wantErr:   []string{"lvcreate --snapshot"},
		},
		{
			name:      "mount fails",
			fail:      []string{"mount"},
			wantCalls: []string{lvs, lvcreate, "mount -o ro,nouuid -t xfs /dev/vg0/writecap-test MNT", lvremove},
			wantErr:   []string{"mount -o ro,nouuid"},
		},
		{
			name:      "mount and lvremove fail",
			fail:      []string{"mount", "lvremove"},
			wantCalls: []string{lvs, lvcreate, "mount -o ro,nouuid -t xfs /dev/vg0/writecap-test MNT", lvremove},
			wantErr:   []string{"mount -o ro,nouuid", "lvremove -f"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l, fake, dir, mnt := lvmSetup(t, "xfs", "/", Options{})
			if tc.lvsOut != "" {
				fake.out["lvs"] = tc.lvsOut
			}
			for _, name := range tc.fail {
				fake.fail[name] = 1
			}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			fake.before = func(name string) {
				if name == tc.cancelOn {
					cancel()
				}
			}
			s, err := l.Take(ctx, dir)
			if s != nil {
				t.Errorf("Take returned a snapshot: %+v", s)
			}
			assertError(t, err, tc.wantErr...)
			assertCalls(t, fake, withMnt(tc.wantCalls, mnt)...)
			assertMissing(t, mnt, ".")
		})
	}
}

// TestLVMRelease: a failed step of Release is retried by the next Release,
// and the volume is never removed while still mounted.
func TestLVMRelease(t *testing.T) {
	for _, tc := range []struct {
		name       string
		fail       string
		wantFirst  []string
		wantSecond []string
	}{
		{
			name:       "umount fails",
			fail:       "umount",
			wantFirst:  []string{"umount MNT"},
			wantSecond: []string{"umount MNT", "lvremove -f vg0/writecap-test"},
		},
		{
			name:       "lvremove fails",
			fail:       "lvremove",
			wantFirst:  []string{"umount MNT", "lvremove -f vg0/writecap-test"},
			wantSecond: []string{"lvremove -f vg0/writecap-test"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l, fake, dir, mnt := lvmSetup(t, "xfs", "/", Options{})
			s, err := l.Take(context.Background(), dir)
			must(t, err)
			fake.calls = nil
			fake.fail[tc.fail] = 1
			assertError(t, s.Release(context.Background()), tc.fail)
			assertCalls(t, fake, withMnt(tc.wantFirst, mnt)...)
			must(t, s.Release(context.Background()))
			assertCalls(t, fake, withMnt(tc.wantSecond, mnt)...)
			assertMissing(t, mnt, ".")
		})
	}
}

func TestLVMNoMount(t *testing.T) {
	l, fake, dir, _ := lvmSetup(t, "xfs", "/", Options{})
	l.mounts = func() ([]mount, error) { return []mount{{Root: "/", Point: "/elsewhere"}}, nil }
	_, err := l.Take(context.Background(), dir)
	assertError(t, err, dir)
	assertCalls(t, fake)
}
