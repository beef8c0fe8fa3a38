//go:build linux

package snapshot

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// btrfs takes read-only snapshots of btrfs subvolumes. The snapshot is
// atomic for the whole subvolume and costs no copying; subvolumes nested in
// dir appear in it as empty directories, as btrfs does.
type btrfs struct {
	opts Options
	run  runner
}

func newBtrfs(opts Options) *btrfs {
	return &btrfs{opts: opts, run: execRunner{}}
}

func (b *btrfs) Name() string { return "btrfs" }

func (b *btrfs) Take(ctx context.Context, dir string) (*Snapshot, error) {
	dir, err := resolveDir(dir)
	if err != nil {
		return nil, err
	}
	sub, err := isSubvolume(dir)
	if err != nil {
		return nil, err
	}
	if !sub {
		return nil, fmt.Errorf("snapshot: btrfs: %s is not a btrfs subvolume", dir)
	}
	staging, err := b.staging(ctx, dir)
	if err != nil {
		return nil, err
	}
	dest := filepath.Join(staging, newName())
	if _, err := b.run.run(ctx, "btrfs", "subvolume", "snapshot", "-r", dir, dest); err != nil {
		// Killed by ctx, the command may still have made the snapshot: the
		// ioctl completes before the signal is seen.
		if _, serr := os.Lstat(dest); serr == nil {
			cctx, cancel := cleanupContext(ctx)
			defer cancel()
			err = errors.Join(err, b.delete(cctx, dest))
		}
		return nil, err
	}
	return &Snapshot{
		Path:     dest,
		Provider: b.Name(),
		Dir:      dir,
		Created:  time.Now(),
		release:  func(ctx context.Context) error { return b.delete(ctx, dest) },
	}, nil
}

func (b *btrfs) delete(ctx context.Context, path string) error {
	_, err := b.run.run(ctx, "btrfs", "subvolume", "delete", path)
	return err
}

// staging returns the directory to snapshot into, making it if needed. A
// staging directory made here is a subvolume itself, so that snapshots of
// the subvolume holding it show it as one empty directory rather than
// placeholders of every snapshot in it.
func (b *btrfs) staging(ctx context.Context, dir string) (string, error) {
	staging := b.opts.Staging
	if staging == "" {
		m, err := mountFor(dir)
		if err != nil {
			return "", err
		}
		parent := filepath.Dir(dir)
		if m.Point == dir {
			// The parent is on another filesystem.
			parent = dir
		}
		staging = filepath.Join(parent, StagingName)
	}
	_, err := os.Lstat(staging)
	switch {
	case err == nil:
		return staging, nil
	case !errors.Is(err, os.ErrNotExist):
		return "", fmt.Errorf("snapshot: btrfs: staging %s: %w", staging, err)
	}
	if _, err := b.run.run(ctx, "btrfs", "subvolume", "create", staging); err != nil {
		// Another Take may have made it meanwhile.
		if _, serr := os.Lstat(staging); serr == nil {
			return staging, nil
		}
		return "", err
	}
	return staging, nil
}
