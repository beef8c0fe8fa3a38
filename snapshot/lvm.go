//go:build linux

package snapshot

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// lvm takes a snapshot of the logical volume under dir with the lvm2
// commands and mounts it read-only. Creating the snapshot suspends the
// volume, which freezes its filesystem, so the snapshot is clean.
type lvm struct {
	opts    Options
	run     runner
	mounts  func() ([]mount, error)
	newName func() string
}

func newLVM(opts Options) *lvm {
	return &lvm{opts: opts, run: execRunner{}, mounts: readMounts, newName: newName}
}

func (l *lvm) Name() string { return "lvm" }

func (l *lvm) Take(ctx context.Context, dir string) (*Snapshot, error) {
	dir, err := resolveDir(dir)
	if err != nil {
		return nil, err
	}
	ms, err := l.mounts()
	if err != nil {
		return nil, err
	}
	m, err := mountOf(ms, dir)
	if err != nil {
		return nil, err
	}
	rel, err := filepath.Rel(m.Point, dir)
	if err != nil {
		return nil, fmt.Errorf("snapshot: lvm: %s: %w", dir, err)
	}
	out, err := l.run.run(ctx, "lvs", "--noheadings", "-o", "vg_name,lv_name", m.Source)
	if err != nil {
		return nil, fmt.Errorf("snapshot: lvm: %s is on %s, not a logical volume: %w", dir, m.Source, err)
	}
	f := strings.Fields(string(out))
	if len(f) != 2 {
		return nil, fmt.Errorf("snapshot: lvm: %s is on %s: lvs printed %q, not one volume group and logical volume", dir, m.Source, out)
	}
	vg, lv := f[0], f[1]
	name := l.newName()
	size := l.opts.LVMSize
	if size == "" {
		size = defaultLVMSize
	}
	if _, err := l.run.run(ctx, "lvcreate", "--snapshot", "--name", name, "--size", size, vg+"/"+lv); err != nil {
		if ctx.Err() != nil {
			// Killed by ctx, lvcreate may have got as far as making it.
			cctx, cancel := cleanupContext(ctx)
			defer cancel()
			err = errors.Join(err, l.remove(cctx, vg, name))
		}
		return nil, err
	}
	created := time.Now()
	staging := l.opts.Staging
	if staging == "" {
		staging = defaultLVMStaging
	}
	mnt := filepath.Join(staging, name)
	if err := l.mount(ctx, vg, name, m.FSType, mnt); err != nil {
		cctx, cancel := cleanupContext(ctx)
		defer cancel()
		return nil, errors.Join(err, l.remove(cctx, vg, name))
	}
	mounted := true
	return &Snapshot{
		// A bind mount shows a directory (Root) of the volume at m.Point;
		// the snapshot is mounted from the volume's top.
		Path:     filepath.Join(mnt, m.Root, rel),
		Provider: l.Name(),
		Dir:      dir,
		Created:  created,
		release: func(ctx context.Context) error {
			if mounted {
				if _, err := l.run.run(ctx, "umount", mnt); err != nil {
					// Removing a volume that is still mounted would fail.
					return err
				}
				mounted = false
			}
			err := l.remove(ctx, vg, name)
			if rerr := os.Remove(mnt); rerr != nil && !errors.Is(rerr, os.ErrNotExist) {
				err = errors.Join(err, fmt.Errorf("snapshot: lvm: %w", rerr))
			}
			return err
		},
	}, nil
}

// mount mounts the snapshot read-only at mnt, which it makes; on failure it
// removes mnt again.
func (l *lvm) mount(ctx context.Context, vg, name, fstype, mnt string) error {
	if err := os.MkdirAll(mnt, 0o700); err != nil {
		return fmt.Errorf("snapshot: lvm: %w", err)
	}
	opts := "ro"
	if fstype == "xfs" {
		// The origin, with the same filesystem UUID, is mounted.
		opts += ",nouuid"
	}
	if _, err := l.run.run(ctx, "mount", "-o", opts, "-t", fstype, "/dev/"+vg+"/"+name, mnt); err != nil {
		if rerr := os.Remove(mnt); rerr != nil {
			return errors.Join(err, fmt.Errorf("snapshot: lvm: %w", rerr))
		}
		return err
	}
	return nil
}

func (l *lvm) remove(ctx context.Context, vg, name string) error {
	_, err := l.run.run(ctx, "lvremove", "-f", vg+"/"+name)
	return err
}
