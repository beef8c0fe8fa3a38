//go:build linux

// Package snapshot makes consistent, point-in-time views of a directory for
// a sync to read while the directory keeps changing. Providers: btrfs
// subvolume snapshots, a freeze of the filesystem combined with reflink (xfs,
// btrfs) or block copies (ext4) of its files, and LVM snapshots through the
// lvm2 commands.
package snapshot

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// StagingName is the default staging directory's name. When a snapshot's
// directory is the top of its filesystem the staging directory lies inside
// it, so whatever walks the live directory should skip this name.
const StagingName = ".writecap-snapshots"

// A Provider makes a consistent, point-in-time view of a directory's files.
type Provider interface {
	Name() string
	Take(ctx context.Context, dir string) (*Snapshot, error)
}

// Options tunes the providers; the zero value picks the defaults.
type Options struct {
	// Staging is the directory snapshots are made in. btrfs needs it on the
	// subvolume's filesystem and freeze reflinks only there. Empty picks
	// StagingName next to the subvolume (btrfs, or at the top of the
	// filesystem when the subvolume is mounted itself), StagingName at the
	// top of dir's filesystem (freeze) and /run/writecap/snapshots for the
	// mountpoints of LVM snapshots.
	Staging string
	// LVMSize is the copy-on-write space of an LVM snapshot, in lvcreate's
	// --size syntax ("1G" when empty). The snapshot becomes invalid if more
	// than this is overwritten on the origin while it exists.
	LVMSize string
	// FreezeTimeout bounds each freeze of the freeze provider: past it the
	// filesystem is thawed whatever the provider is doing, and Take fails
	// (5s when 0).
	FreezeTimeout time.Duration
	// FreezeHold bounds the bytes the freeze provider reads into memory while
	// the filesystem is frozen: the content that changed while its files were
	// being copied (256 MiB when 0).
	FreezeHold int64
}

const (
	defaultLVMSize       = "1G"
	defaultLVMStaging    = "/run/writecap/snapshots"
	defaultFreezeTimeout = 5 * time.Second
	defaultFreezeHold    = 256 << 20
)

// Snapshot is a view taken by a Provider. Path holds the directory's files
// as they were at Created, with the same relative layout as Dir. It stays
// until Release.
type Snapshot struct {
	Path     string
	Provider string
	Dir      string
	Created  time.Time

	release func(context.Context) error
}

// Release removes the snapshot. After a failure it may be called again; it
// then retries only the steps that did not complete. It is not safe for
// concurrent use.
func (s *Snapshot) Release(ctx context.Context) error {
	if s.release == nil {
		return nil
	}
	if err := s.release(ctx); err != nil {
		return err
	}
	s.release = nil
	return nil
}

// ByName returns the provider called name: "btrfs", "freeze" or "lvm".
func ByName(name string, opts Options) (Provider, error) {
	switch name {
	case "btrfs":
		return newBtrfs(opts), nil
	case "freeze":
		return newFreeze(opts), nil
	case "lvm":
		return newLVM(opts), nil
	}
	return nil, fmt.Errorf("snapshot: unknown provider %q (want btrfs, freeze or lvm)", name)
}

// Detect picks the provider for dir: btrfs when dir is a btrfs subvolume,
// freeze when it is on xfs, btrfs or ext4. LVM is never picked: whether
// dir's device is a logical volume with room for a snapshot is the
// operator's knowledge, so it is chosen by name.
func Detect(dir string, opts Options) (Provider, error) {
	dir, err := resolveDir(dir)
	if err != nil {
		return nil, err
	}
	magic, err := fsMagic(dir)
	if err != nil {
		return nil, err
	}
	sub, err := isSubvolume(dir)
	if err != nil {
		return nil, err
	}
	switch {
	case sub:
		return newBtrfs(opts), nil
	case freezable(magic):
		return newFreeze(opts), nil
	}
	return nil, fmt.Errorf("snapshot: no provider for %s on a %s filesystem (btrfs subvolumes, xfs, btrfs and ext4 have one)", dir, fsName(dir, magic))
}

// resolveDir makes dir absolute and free of symlinks, so that it can be
// matched against mountpoints, and checks that it is a directory.
func resolveDir(dir string) (string, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return "", fmt.Errorf("snapshot: %s: %w", dir, err)
	}
	real, err := filepath.EvalSymlinks(abs)
	if err != nil {
		return "", fmt.Errorf("snapshot: %s: %w", dir, err)
	}
	fi, err := os.Stat(real)
	if err != nil {
		return "", fmt.Errorf("snapshot: %s: %w", dir, err)
	}
	if !fi.IsDir() {
		return "", fmt.Errorf("snapshot: %s is not a directory", dir)
	}
	return real, nil
}

func fsMagic(dir string) (uint32, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return 0, fmt.Errorf("snapshot: statfs %s: %w", dir, err)
	}
	// Statfs_t.Type is signed and of a different width per architecture.
	return uint32(st.Type), nil
}

// fsName names dir's filesystem type for messages.
func fsName(dir string, magic uint32) string {
	if ms, err := readMounts(); err == nil {
		if m, err := mountOf(ms, dir); err == nil {
			return m.FSType
		}
	}
	return fmt.Sprintf("%#x", magic)
}

// btrfsRootIno is the inode number of every btrfs subvolume's top directory
// (BTRFS_FIRST_FREE_OBJECTID).
const btrfsRootIno = 256

// isSubvolume reports whether dir is the top directory of a btrfs subvolume.
func isSubvolume(dir string) (bool, error) {
	magic, err := fsMagic(dir)
	if err != nil || magic != unix.BTRFS_SUPER_MAGIC {
		return false, err
	}
	var st unix.Stat_t
	if err := unix.Stat(dir, &st); err != nil {
		return false, fmt.Errorf("snapshot: stat %s: %w", dir, err)
	}
	return st.Ino == btrfsRootIno, nil
}

var nameSeq atomic.Uint64

// newName returns a name for a snapshot that is unique on this machine and
// valid as an LVM logical volume name.
func newName() string {
	return fmt.Sprintf("writecap-%s-%d-%d", time.Now().UTC().Format("20060102T150405Z"), os.Getpid(), nameSeq.Add(1))
}

// cleanupContext is for undoing a half-made snapshot: it must still run
// when ctx was cancelled, which is often why the snapshot failed.
func cleanupContext(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
}
