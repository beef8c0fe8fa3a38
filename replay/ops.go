//go:build linux

package replay

import (
	"errors"
	"log/slog"
	"os"
	pathpkg "path"
	"strconv"

	"golang.org/x/sys/unix"

	"github.com/writecap/writecap/journal"
)

// gone reports whether err means the record's subject, or a directory on its
// path, is not on the replica: a later record removed or replaced it (replay
// after a crash), or the replica is stale and capture repairs it.
func gone(err error) bool {
	return errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENOTDIR)
}

// logRec formats a record only if the log line is emitted, and never dumps
// its data.
type logRec struct{ *journal.Record }

func (l logRec) LogValue() slog.Value { return slog.StringValue(l.String()) }

// skip records a tolerated no-op.
func (a *Applier) skip(r *journal.Record, why string) (bool, error) {
	a.log.Debug("replay: nothing to do", "record", logRec{r}, "why", why)
	return true, nil
}

// openData opens the file of a write, truncate or fallocate. A missing
// parent, or a directory where the master had a file, means a later record
// changed the tree: the record is skipped.
func (a *Applier) openData(r *journal.Record) (e *fdEntry, skip bool, err error) {
	e, err = a.file(r.Path)
	switch {
	case err == nil:
		return e, false, nil
	case gone(err), err == unix.EISDIR:
		a.skip(r, err.Error())
		return nil, true, nil
	}
	return nil, false, sysErr("openat2", err)
}

func (a *Applier) write(r *journal.Record) (bool, error) {
	e, skip, err := a.openData(r)
	if e == nil {
		return skip, err
	}
	b, off := r.Data, r.Offset
	for len(b) > 0 {
		n, err := unix.Pwrite(e.fd, b, off)
		if err != nil {
			return false, sysErr("pwrite", err)
		}
		b, off = b[n:], off+int64(n)
	}
	e.dirty = true
	return false, nil
}

func (a *Applier) truncate(r *journal.Record) (bool, error) {
	e, skip, err := a.openData(r)
	if e == nil {
		return skip, err
	}
	if err := unix.Ftruncate(e.fd, r.Length); err != nil {
		return false, sysErr("ftruncate", err)
	}
	e.dirty = true
	return false, nil
}

// zeroModes make a range read as zeros; where the filesystem lacks them,
// writing zeros gives the same content.
const zeroModes = unix.FALLOC_FL_PUNCH_HOLE | unix.FALLOC_FL_ZERO_RANGE | unix.FALLOC_FL_WRITE_ZEROES

func (a *Applier) fallocate(r *journal.Record) (bool, error) {
	e, skip, err := a.openData(r)
	if e == nil {
		return skip, err
	}
	err = unix.Fallocate(e.fd, r.Mode, r.Offset, r.Length)
	if err == unix.EOPNOTSUPP && r.Mode&zeroModes != 0 {
		if !a.zeroLog {
			a.zeroLog = true
			a.log.Info("replay: filesystem lacks a fallocate mode, writing zeros instead", "record", logRec{r}, "mode", r.Mode)
		}
		err = zeroFill(e.fd, r.Mode, r.Offset, r.Length)
	}
	if err != nil {
		return false, sysErr("fallocate", err)
	}
	e.dirty = true
	return false, nil
}

var zeros [64 << 10]byte

// zeroFill writes zeros over [off, off+n), clipped to the current size when
// the mode keeps the size (punch hole always does).
func zeroFill(fd int, mode uint32, off, n int64) error {
	if mode&unix.FALLOC_FL_KEEP_SIZE != 0 {
		var st unix.Stat_t
		if err := unix.Fstat(fd, &st); err != nil {
			return err
		}
		n = min(n, st.Size-off)
	}
	for n > 0 {
		w, err := unix.Pwrite(fd, zeros[:min(n, int64(len(zeros)))], off)
		if err != nil {
			return err
		}
		off, n = off+int64(w), n-int64(w)
	}
	return nil
}

func (a *Applier) create(r *journal.Record) (bool, error) {
	e, err := a.file(r.Path)
	if err == unix.EISDIR {
		// The master created a file here, so this directory is stale.
		if err = a.remove(r, r.Path); err != nil {
			return false, err
		}
		e, err = a.file(r.Path)
	}
	if err != nil {
		return a.unresolved(r, err)
	}
	// The file may exist already (replay): set the exact bits, no umask.
	if err := unix.Fchmod(e.fd, r.Mode&0o7777); err != nil {
		return false, sysErr("fchmod", err)
	}
	e.dirty = true
	return false, nil
}

// remove deletes path, recursively if it is a directory, and forgets its
// descriptors.
func (a *Applier) remove(r *journal.Record, path string) error {
	d, name, err := a.parent(path)
	if err != nil {
		return sysErr("openat2", err)
	}
	a.log.Info("replay: removing stale entry", "record", logRec{r}, "path", path)
	d.dirty = true
	err = removeAll(d.fd, name)
	a.cache.drop(path)
	return err
}

// removeAll removes name in dirfd and everything beneath it. Every step is
// relative to a directory descriptor opened beneath the last and nothing is
// followed, so a symlink in the tree is removed, never traversed.
func removeAll(dirfd int, name string) error {
	err := unix.Unlinkat(dirfd, name, 0)
	switch err {
	case nil, unix.ENOENT:
		return nil
	case unix.EISDIR: // Linux's answer to unlink(2) on a directory
	default:
		return sysErr("unlinkat", err)
	}
	fd, err := openBeneath(dirfd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW, 0)
	if err != nil {
		return sysErr("openat2", err)
	}
	f := os.NewFile(uintptr(fd), name)
	names, err := f.Readdirnames(-1)
	for i := 0; err == nil && i < len(names); i++ {
		err = removeAll(fd, names[i])
	}
	f.Close()
	if err != nil {
		return err
	}
	return sysErr("unlinkat", unix.Unlinkat(dirfd, name, unix.AT_REMOVEDIR))
}

func (a *Applier) mkdir(r *journal.Record) (bool, error) {
	d, name, err := a.parent(r.Path)
	if err != nil {
		return a.unresolved(r, err)
	}
	mode := r.Mode & 0o7777
	err = unix.Mkdirat(d.fd, name, mode)
	if err == unix.EEXIST {
		var st unix.Stat_t
		if err = unix.Fstatat(d.fd, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return false, sysErr("fstatat", err)
		}
		if st.Mode&unix.S_IFMT != unix.S_IFDIR {
			// The master made a directory here, so this is stale.
			if err = a.remove(r, r.Path); err != nil {
				return false, err
			}
			err = unix.Mkdirat(d.fd, name, mode)
		}
	}
	if err != nil {
		return false, sysErr("mkdirat", err)
	}
	d.dirty = true
	// mkdirat applies the umask; the record's bits are exact.
	if err := chmodNoFollow(d.fd, name, mode); err != nil {
		return false, sysErr("fchmodat2", err)
	}
	return false, nil
}

func (a *Applier) rmdir(r *journal.Record) (bool, error) {
	d, name, err := a.parent(r.Path)
	if err != nil {
		return a.unresolved(r, err)
	}
	err = unix.Unlinkat(d.fd, name, unix.AT_REMOVEDIR)
	switch err {
	case unix.ENOENT:
		return a.skip(r, "already removed")
	case unix.ENOTEMPTY, unix.EEXIST:
		// Empty on the master: what is left here is stale.
		a.log.Info("replay: removing stale directory contents", "record", logRec{r})
		err = removeAll(d.fd, name)
	case unix.ENOTDIR:
		// A directory on the master, something else here: stale.
		err = sysErr("unlinkat", unix.Unlinkat(d.fd, name, 0))
	}
	d.dirty = true
	a.cache.drop(r.Path)
	return false, sysErr("unlinkat", err)
}

func (a *Applier) unlink(r *journal.Record) (bool, error) {
	d, name, err := a.parent(r.Path)
	if err != nil {
		return a.unresolved(r, err)
	}
	err = unix.Unlinkat(d.fd, name, 0)
	switch err {
	case unix.ENOENT:
		return a.skip(r, "already removed")
	case unix.EISDIR:
		// Not a directory on the master: this one is stale.
		a.log.Info("replay: removing stale directory", "record", logRec{r})
		err = removeAll(d.fd, name)
	}
	d.dirty = true
	a.cache.drop(r.Path)
	return false, sysErr("unlinkat", err)
}

// parents opens the parent directories of a two-path record.
func (a *Applier) parents(r *journal.Record) (sd *fdEntry, sn string, dd *fdEntry, dn string, err error) {
	if sd, sn, err = a.parent(r.Path); err == nil {
		dd, dn, err = a.parent(r.Path2)
	}
	return sd, sn, dd, dn, err
}

func (a *Applier) rename(r *journal.Record) (bool, error) {
	sd, sn, dd, dn, err := a.parents(r)
	if err != nil {
		return a.unresolved(r, err)
	}
	flags := uint(r.Flags)
	err = unix.Renameat2(sd.fd, sn, dd.fd, dn, flags)
	if err == unix.EEXIST && flags&unix.RENAME_NOREPLACE != 0 {
		// The name was free on the master: what stands here is stale.
		flags &^= unix.RENAME_NOREPLACE
		err = unix.Renameat2(sd.fd, sn, dd.fd, dn, flags)
	}
	switch err {
	case unix.ENOENT:
		// Source gone: applied before (the destination exists), or
		// removed by a later record.
		return a.skip(r, "source missing")
	case unix.ENOTEMPTY, unix.EEXIST, unix.EISDIR, unix.ENOTDIR:
		if flags&unix.RENAME_EXCHANGE != 0 {
			break
		}
		// The destination's type or contents differ from the master's,
		// where this rename succeeded: replace it.
		a.log.Info("replay: replacing stale rename destination", "record", logRec{r})
		if err = removeAll(dd.fd, dn); err == nil {
			err = unix.Renameat2(sd.fd, sn, dd.fd, dn, flags)
		}
	}
	sd.dirty, dd.dirty = true, true
	a.cache.drop(r.Path)
	a.cache.drop(r.Path2)
	return false, sysErr("renameat2", err)
}

func (a *Applier) link(r *journal.Record) (bool, error) {
	sd, sn, dd, dn, err := a.parents(r)
	if err != nil {
		return a.unresolved(r, err)
	}
	// No AT_SYMLINK_FOLLOW: like link(2), a symlink source is linked
	// itself, never resolved.
	err = unix.Linkat(sd.fd, sn, dd.fd, dn, 0)
	if err == unix.EEXIST {
		same, serr := sameFile(sd.fd, sn, dd.fd, dn)
		switch {
		case serr != nil:
			return false, sysErr("fstatat", serr)
		case same:
			return a.skip(r, "already linked")
		}
		if err = a.remove(r, r.Path2); err == nil {
			err = unix.Linkat(sd.fd, sn, dd.fd, dn, 0)
		}
	}
	if err == unix.ENOENT {
		return a.skip(r, "source missing")
	}
	dd.dirty = true
	return false, sysErr("linkat", err)
}

// sameFile reports whether two names are links to one inode.
func sameFile(d1 int, n1 string, d2 int, n2 string) (bool, error) {
	var s1, s2 unix.Stat_t
	if err := unix.Fstatat(d1, n1, &s1, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return false, err
	}
	if err := unix.Fstatat(d2, n2, &s2, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return false, err
	}
	return s1.Dev == s2.Dev && s1.Ino == s2.Ino, nil
}

func (a *Applier) symlink(r *journal.Record) (bool, error) {
	d, name, err := a.parent(r.Path)
	if err != nil {
		return a.unresolved(r, err)
	}
	err = unix.Symlinkat(r.Path2, d.fd, name)
	if err == unix.EEXIST {
		buf := make([]byte, unix.PathMax)
		// EINVAL (not a symlink) falls through to replacement.
		if n, rerr := unix.Readlinkat(d.fd, name, buf); rerr == nil && string(buf[:n]) == r.Path2 {
			return a.skip(r, "already linked")
		}
		if err = a.remove(r, r.Path); err == nil {
			err = unix.Symlinkat(r.Path2, d.fd, name)
		}
	}
	d.dirty = true
	return false, sysErr("symlinkat", err)
}

func (a *Applier) setattr(r *journal.Record) (bool, error) {
	d, name, err := a.parent(r.Path)
	if err != nil {
		return a.unresolved(r, err)
	}
	var st unix.Stat_t
	err = unix.Fstatat(d.fd, name, &st, unix.AT_SYMLINK_NOFOLLOW)
	switch {
	case gone(err):
		return a.skip(r, err.Error())
	case err != nil:
		return false, sysErr("fstatat", err)
	}
	// Owner before mode: chown clears set-user-ID and set-group-ID bits,
	// which the mode then restores exactly.
	if r.Flags&journal.SetOwner != 0 {
		if err := unix.Fchownat(d.fd, name, int(r.UID), int(r.GID), unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return false, sysErr("fchownat", err)
		}
	}
	// A symlink's mode means nothing on Linux.
	if r.Flags&journal.SetMode != 0 && st.Mode&unix.S_IFMT != unix.S_IFLNK {
		if err := chmodNoFollow(d.fd, name, r.Mode&0o7777); err != nil {
			return false, sysErr("fchmodat2", err)
		}
	}
	if r.Flags&(journal.SetAtime|journal.SetMtime) != 0 {
		ts := []unix.Timespec{{Nsec: unix.UTIME_OMIT}, {Nsec: unix.UTIME_OMIT}}
		if r.Flags&journal.SetAtime != 0 {
			ts[0] = unix.NsecToTimespec(r.Atime)
		}
		if r.Flags&journal.SetMtime != 0 {
			ts[1] = unix.NsecToTimespec(r.Mtime)
		}
		if err := unix.UtimesNanoAt(d.fd, name, ts, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return false, sysErr("utimensat", err)
		}
	}
	return false, nil
}

// chmodNoFollow sets the mode of name without following a symlink there.
// fchmodat2 (Linux 6.6) does it directly; x/sys reports its absence as
// EOPNOTSUPP, the answer it also gives for a symlink, which callers never
// pass.
func chmodNoFollow(dirfd int, name string, mode uint32) error {
	err := unix.Fchmodat(dirfd, name, mode, unix.AT_SYMLINK_NOFOLLOW)
	if err != unix.EOPNOTSUPP {
		return err
	}
	return chmodViaProc(dirfd, name, mode)
}

// chmodViaProc is glibc's lchmod emulation: pin the inode with an O_PATH
// descriptor that refuses symlinks, then change it through /proc/self/fd.
func chmodViaProc(dirfd int, name string, mode uint32) error {
	fd, err := openBeneath(dirfd, name, unix.O_PATH|unix.O_NOFOLLOW, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	return unix.Fchmodat(unix.AT_FDCWD, "/proc/self/fd/"+strconv.Itoa(fd), mode, 0)
}

func (a *Applier) barrier(r *journal.Record) (bool, error) {
	if a.deferBarriers {
		a.nBarriers.Add(1)
		return false, nil
	}
	if r.Path == "" {
		if err := a.syncAll(); err != nil {
			return false, err
		}
		a.nBarriers.Add(1)
		return false, nil
	}
	d, name, err := a.parent(r.Path)
	if err != nil {
		return a.unresolved(r, err)
	}
	if e := a.cache.get(r.Path); e != nil {
		if err := a.fsync(e.fd, r.Path); err != nil {
			return false, err
		}
		e.dirty = false
	} else {
		// fsync needs no write access; read-only also opens a directory.
		fd, err := openBeneath(d.fd, name, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK, 0)
		switch {
		case gone(err):
			return a.skip(r, err.Error())
		case errors.Is(err, ErrEscape):
			if _, ok := innerSymlink(d, r.Path, name); ok {
				// Stale state, not an escape: a symlink holds no data.
				return a.skip(r, "a symlink inside the root stands at the name")
			}
			return false, err
		case err != nil:
			return false, sysErr("openat2", err)
		}
		err = a.fsync(fd, r.Path)
		unix.Close(fd)
		if err != nil {
			return false, err
		}
	}
	// The parent makes the file's name durable too.
	if err := a.fsync(d.fd, d.path); err != nil {
		return false, err
	}
	d.dirty = false
	a.nBarriers.Add(1)
	return false, nil
}

// unresolved answers a record whose path could not be opened: a missing
// parent is stale replica state and skipped, anything else is an error.
func (a *Applier) unresolved(r *journal.Record, err error) (bool, error) {
	if gone(err) {
		return a.skip(r, err.Error())
	}
	return false, sysErr("openat2", err)
}

// prune removes from the directory every entry the record does not name:
// what the master's directory no longer holds. Names it lists but this
// directory lacks are the business of the records that create them.
func (a *Applier) prune(r *journal.Record) (bool, error) {
	keep, _ := pruneNames(r.Data)
	d, err := a.dir(r.Path)
	if err != nil {
		return a.unresolved(r, err)
	}
	// A descriptor of its own: reading a directory moves its offset.
	fd, err := unix.Openat(d.fd, ".", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return false, sysErr("openat", err)
	}
	f := os.NewFile(uintptr(fd), r.Path)
	names, err := f.Readdirnames(-1)
	f.Close()
	if err != nil {
		return false, err
	}
	removed := 0
	for _, name := range names {
		if keep[name] {
			continue
		}
		if err := removeAll(d.fd, name); err != nil {
			return false, err
		}
		a.cache.drop(pathpkg.Join(r.Path, name))
		removed++
	}
	if removed == 0 {
		return a.skip(r, "nothing to prune")
	}
	d.dirty = true
	a.log.Info("replay: pruned entries the master no longer has", "record", logRec{r}, "removed", removed)
	return false, nil
}
