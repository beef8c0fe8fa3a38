//go:build linux

package snapshot

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

func TestBtrfsTake(t *testing.T) {
	for _, tc := range []struct {
		name        string
		dir         string // relative to the mountpoint; a subvolume
		staging     string // Options.Staging relative to the mountpoint; "" for the default
		wantStaging string // relative to the mountpoint
	}{
		{name: "subvolume", dir: "data", wantStaging: StagingName},
		{name: "nested subvolume", dir: "a/data", wantStaging: "a/" + StagingName},
		{name: "top of filesystem", dir: ".", wantStaging: StagingName},
		{name: "staging option", dir: "data", staging: "elsewhere/snaps", wantStaging: "elsewhere/snaps"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mnt := loopFS(t, "btrfs")
			dir := filepath.Join(mnt, tc.dir)
			var opts Options
			if tc.staging != "" {
				opts.Staging = filepath.Join(mnt, tc.staging)
				must(t, os.MkdirAll(filepath.Dir(opts.Staging), 0o755))
			}
			if tc.dir == "." {
				// Made before fill sets the times of dir.
				run(t, "btrfs", "subvolume", "create", filepath.Join(mnt, StagingName))
			} else {
				must(t, os.MkdirAll(filepath.Dir(dir), 0o755))
				run(t, "btrfs", "subvolume", "create", dir)
			}
			fill(t, dir)

			s, err := newBtrfs(opts).Take(context.Background(), dir)
			must(t, err)
			staging := filepath.Join(mnt, tc.wantStaging)
			if s.Provider != "btrfs" || s.Dir != dir || s.Created.IsZero() || filepath.Dir(s.Path) != staging {
				t.Errorf("snapshot %+v; want provider btrfs, dir %s, a time, a path in %s", s, dir, staging)
			}
			if ok, err := isSubvolume(staging); err != nil || !ok {
				t.Errorf("staging %s is not a subvolume (%v)", staging, err)
			}
			if err := os.WriteFile(filepath.Join(s.Path, "w"), nil, 0o644); !errors.Is(err, unix.EROFS) {
				t.Errorf("writing into the snapshot: %v; want EROFS", err)
			}
			assertFilled(t, s.Path)
			if tc.dir == "." {
				// The staging subvolume shows as an empty directory.
				if got := names(t, filepath.Join(s.Path, StagingName)); len(got) != 0 {
					t.Errorf("%s in the snapshot holds %q", StagingName, got)
				}
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

func TestBtrfsNotSubvolume(t *testing.T) {
	for _, fstype := range []string{"btrfs", "xfs"} {
		t.Run(fstype, func(t *testing.T) {
			mnt := loopFS(t, fstype)
			dir := filepath.Join(mnt, "data")
			must(t, os.Mkdir(dir, 0o755))
			_, err := newBtrfs(Options{}).Take(context.Background(), dir)
			assertError(t, err, dir, "not a btrfs subvolume")
			assertMissing(t, mnt, StagingName)
		})
	}
}
