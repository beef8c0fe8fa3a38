//go:build linux

package snapshot

// The freeze provider, and what works on a frozen filesystem (tried here on
// Linux 6.x with xfs, btrfs and ext4):
//
//   - Every write to a frozen filesystem blocks until it is thawed, and
//     uninterruptibly: the task sleeps in D state and not even SIGKILL ends
//     it. Making a reflink (FICLONE) is such a write, on its destination, so
//     no reflink can be made while frozen, and one stray write by the agent
//     would hang it until something else thaws the filesystem.
//   - Reads, lstat, readlink, getdents and FIEMAP work while frozen (atime
//     updates are skipped).
//
// So Take never writes while frozen, and keeps each freeze short: it grows
// with the number of entries and with what changed, not with the data:
//
//  1. Frozen: walk dir (metadata only), then thaw. The freeze waits for
//     writes in progress and writes mmap'ed pages back, so from the thaw on
//     every change to a file sets a newer ctime (write, truncate, hole punch,
//     and the first store to each mmap'ed page) than this walk saw.
//  2. Thawed: copy each regular file into a work directory in staging: a
//     reflink where the filesystem can make one (xfs and btrfs, staging on
//     the same filesystem), a block copy otherwise (ext4, or staging
//     elsewhere). Writers go on meanwhile.
//  3. Frozen: walk dir again; this walk is the snapshot's point in time. A
//     file whose size, mtime and ctime are those of step 1 has not changed
//     since, so its copy is right. For each other file, read into memory
//     what its copy lacks: the ranges where it no longer shares blocks with
//     its reflink (FIEMAP), the chunks that differ from its block copy, or
//     all of it for a file with no copy. Then thaw.
//  4. Thawed: build the view in staging from the frozen walk: directories,
//     symlinks, special files and hard links as walked, regular files from
//     their copies patched with what was read, then owners, modes and times.
//
// If more than Options.FreezeHold bytes changed during step 2, step 3 thaws
// at once, the changed files are copied again (step 3's walk standing for
// step 1's) and step 3 is retried, at most freezeRounds times. A watchdog
// thaws when Options.FreezeTimeout passes or ctx ends even if a frozen step
// is stuck, and Take then fails. Whatever fails, the filesystem is thawed
// and staging holds nothing of this Take.
//
// A filesystem frozen by something else fails step 1 (EBUSY) and is left
// frozen; only making the staging directory, the first time, would wait for
// its thaw. A kill -9 of the agent while frozen leaves the filesystem frozen
// until `fsfreeze -u`; nothing in-process can prevent that.

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// FIFREEZE and FITHAW, _IOWR('X', 119 and 120, int) in the asm-generic
// encoding (x86, arm, riscv, loongarch); unix does not define them.
const (
	fiFreeze = 0xC0045877
	fiThaw   = 0xC0045878
)

// freezeRounds is how many times step 3 is tried before Take gives up on a
// directory that changes faster than it can be copied.
const freezeRounds = 3

// errOverHold ends a frozen step that would read more than Options.FreezeHold.
var errOverHold = errors.New("more changed than FreezeHold allows to read while frozen")

// freezeMu serialises this process's freezes: freezing a frozen filesystem
// fails with EBUSY.
var freezeMu sync.Mutex

type freeze struct {
	opts Options
	racy time.Duration // see racyWindow; tests set 0 to rely on ctime alone
	// Test hooks, nil outside tests: beforeFreeze runs before each freeze
	// of step 3, whileFrozen inside it, after the walk.
	beforeFreeze func()
	whileFrozen  func()
}

func newFreeze(opts Options) *freeze { return &freeze{opts: opts, racy: racyWindow} }

func (f *freeze) Name() string { return "freeze" }

// freezable reports whether the freeze provider handles a filesystem.
func freezable(magic uint32) bool {
	switch magic {
	case unix.XFS_SUPER_MAGIC, unix.BTRFS_SUPER_MAGIC, unix.EXT4_SUPER_MAGIC:
		return true
	}
	return false
}

func (f *freeze) Take(ctx context.Context, dir string) (*Snapshot, error) {
	dir, err := resolveDir(dir)
	if err != nil {
		return nil, err
	}
	magic, err := fsMagic(dir)
	if err != nil {
		return nil, err
	}
	if !freezable(magic) {
		return nil, fmt.Errorf("snapshot: freeze: %s is on a %s filesystem; freeze works on xfs, btrfs and ext4", dir, fsName(dir, magic))
	}
	staging, err := f.staging(dir)
	if err != nil {
		return nil, err
	}
	var st unix.Stat_t
	if err := unix.Stat(staging, &st); err != nil {
		return nil, fmt.Errorf("snapshot: freeze: stat %s: %w", staging, err)
	}
	name := newName()
	t := &freezeTake{
		dir:     dir,
		root:    filepath.Join(staging, name),
		work:    filepath.Join(staging, name+".work"),
		skip:    devIno{uint64(st.Dev), st.Ino},
		reflink: magic != unix.EXT4_SUPER_MAGIC,
		racy:    f.racy,
		copies:  map[uint64]*fileCopy{},
	}
	s, err := f.take(ctx, t)
	err = errors.Join(err, removeMade(t.work))
	if err != nil {
		return nil, errors.Join(err, removeMade(t.root))
	}
	return s, nil
}

// removeMade removes the tree at p if there is one. It looks first because
// unlink waits for a frozen filesystem to thaw even when there is nothing
// to remove, and Take may have failed on a filesystem frozen by another.
func removeMade(p string) error {
	if _, err := os.Lstat(p); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err := os.RemoveAll(p); err != nil {
		return fmt.Errorf("snapshot: freeze: %w", err)
	}
	return nil
}

// take runs steps 1 to 4 (see the top of this file).
func (f *freeze) take(ctx context.Context, t *freezeTake) (*Snapshot, error) {
	var w *walk
	if _, err := f.frozen(ctx, t.dir, func(check func() error) error {
		var err error
		w, err = walkTree(t.dir, t.skip, check)
		return err
	}); err != nil {
		return nil, err
	}
	if err := os.Mkdir(t.work, 0o700); err != nil {
		return nil, fmt.Errorf("snapshot: freeze: %w", err)
	}
	if err := t.copyFiles(ctx, w, nil); err != nil {
		return nil, err
	}
	hold := f.opts.FreezeHold
	if hold <= 0 {
		hold = defaultFreezeHold
	}
	for round := 1; ; round++ {
		if f.beforeFreeze != nil {
			f.beforeFreeze()
		}
		var held map[uint64]*delta
		at, err := f.frozen(ctx, t.dir, func(check func() error) error {
			var err error
			if w, err = walkTree(t.dir, t.skip, check); err != nil {
				return err
			}
			if f.whileFrozen != nil {
				f.whileFrozen()
			}
			held, err = t.collect(w, hold, check)
			return err
		})
		switch {
		case err == nil:
			if err := t.build(w, held); err != nil {
				return nil, err
			}
			root := t.root
			return &Snapshot{
				Path:     root,
				Provider: f.Name(),
				Dir:      t.dir,
				Created:  at,
				release: func(context.Context) error {
					if err := os.RemoveAll(root); err != nil {
						return fmt.Errorf("snapshot: freeze: %w", err)
					}
					return nil
				},
			}, nil
		case !errors.Is(err, errOverHold):
			return nil, err
		case round == freezeRounds:
			return nil, fmt.Errorf("snapshot: freeze: %s kept changing while its files were copied (%d tries, %d bytes each): %w", t.dir, freezeRounds, hold, err)
		}
		if err := t.copyFiles(ctx, w, t.stale); err != nil {
			return nil, err
		}
	}
}

// staging returns the directory to build snapshots in, making it if needed.
func (f *freeze) staging(dir string) (string, error) {
	staging := f.opts.Staging
	if staging == "" {
		m, err := mountFor(dir)
		if err != nil {
			return "", err
		}
		staging = filepath.Join(m.Point, StagingName)
	}
	if err := os.MkdirAll(staging, 0o700); err != nil {
		return "", fmt.Errorf("snapshot: freeze: staging: %w", err)
	}
	return staging, nil
}

// frozen runs work with dir's filesystem frozen and returns when it was
// frozen. It thaws when work returns, or before if the freeze timeout passes
// or ctx ends: a watchdog thaws even while work is stuck in a system call (a
// write to the frozen filesystem would be). work must call check between
// steps and stop at its error; frozen fails, and what work read is to be
// discarded, if the filesystem was thawed before work returned.
func (f *freeze) frozen(ctx context.Context, dir string, work func(check func() error) error) (time.Time, error) {
	limit := f.opts.FreezeTimeout
	if limit <= 0 {
		limit = defaultFreezeTimeout
	}
	freezeMu.Lock()
	defer freezeMu.Unlock()
	if err := ctx.Err(); err != nil {
		return time.Time{}, fmt.Errorf("snapshot: freeze: %s: %w", dir, err)
	}
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return time.Time{}, fmt.Errorf("snapshot: freeze: open %s: %w", dir, err)
	}
	defer unix.Close(fd)
	// FIFREEZE stops writers and then flushes; flushing first keeps that
	// stop short.
	if err := unix.Syncfs(fd); err != nil {
		return time.Time{}, fmt.Errorf("snapshot: freeze: syncfs %s: %w", dir, err)
	}
	if err := unix.IoctlSetInt(fd, fiFreeze, 0); err != nil {
		if errors.Is(err, unix.EBUSY) {
			return time.Time{}, fmt.Errorf("snapshot: freeze: the filesystem of %s is frozen already: %w", dir, err)
		}
		return time.Time{}, fmt.Errorf("snapshot: freeze: FIFREEZE %s: %w", dir, err)
	}
	at := time.Now()
	var (
		once    sync.Once
		thawErr error
		cut     atomic.Bool
	)
	thaw := func() { once.Do(func() { thawErr = unix.IoctlSetInt(fd, fiThaw, 0) }) }
	cutShort := func() {
		cut.Store(true)
		thaw()
	}
	timer := time.AfterFunc(limit, cutShort)
	stop := context.AfterFunc(ctx, cutShort)
	check := func() error {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("snapshot: freeze: %s: %w", dir, err)
		}
		if cut.Load() || time.Since(at) > limit {
			return fmt.Errorf("snapshot: freeze: %s: frozen for longer than %v, so thawed", dir, limit)
		}
		return nil
	}
	err = work(check)
	if err == nil {
		// Also when cut short after work's last check: what it read since
		// may mix moments.
		err = check()
	}
	timer.Stop()
	stop()
	thaw()
	if thawErr != nil {
		// EINVAL: something else thawed it meanwhile, so what work read
		// may mix moments, and is no base for a retry: work's own error is
		// kept as text only.
		if err != nil {
			return at, fmt.Errorf("snapshot: freeze: FITHAW %s: %w (after: %v)", dir, thawErr, err)
		}
		return at, fmt.Errorf("snapshot: freeze: FITHAW %s: %w", dir, thawErr)
	}
	return at, err
}
