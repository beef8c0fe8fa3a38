//go:build linux

package workload

import (
	"os"

	"golang.org/x/sys/unix"
)

// renameOutside moves from (absolute) to rel in the tree, or rel in the
// tree to (absolute) when out is true, with rename or renameat.
func (w *worker) renameOutside(outside, rel string, out bool) error {
	if w.rng.IntN(2) == 0 {
		if out {
			return sysRename(w.abs(rel), outside)
		}
		return sysRename(outside, w.abs(rel))
	}
	if out {
		return unix.Renameat(w.rootfd, rel, unix.AT_FDCWD, outside)
	}
	return unix.Renameat(unix.AT_FDCWD, outside, w.rootfd, rel)
}

// renameInto writes a new file outside the tree, renames it in while it is
// still open, and writes more through the same descriptor: the replica
// needs the data written before the rename as well as after.
func (w *worker) renameInto() error {
	name := w.outsideName()
	fd, err := unix.Open(name, unix.O_RDWR|unix.O_CREAT|unix.O_EXCL|unix.O_CLOEXEC, 0o644)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	n := w.smallSize()
	if err := w.issue(callPwrite, fd, w.offset(n), w.payload(n), 0); err != nil {
		return err
	}
	if err := w.renameOutside(name, w.file(), false); err != nil {
		if uerr := unix.Unlink(name); uerr != nil {
			return uerr
		}
		return err
	}
	n = w.smallSize()
	return w.issue(writeCall(w.rng.IntN(int(numWriteCalls))), fd, w.offset(n), w.payload(n), 0)
}

// renameOut opens a file of the tree, renames it out, and writes more
// through the descriptor: those writes no longer belong to the tree.
func (w *worker) renameOut() error {
	rel := w.file()
	fd, err := unix.Openat(w.rootfd, rel, unix.O_RDWR|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	// Another link would keep the file, and the later writes, in the tree.
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return err
	}
	if st.Nlink != 1 {
		return errNotDone
	}
	name := w.outsideName()
	if err := w.renameOutside(name, rel, true); err != nil {
		return err
	}
	n := w.smallSize()
	if err := w.issue(writeCall(w.rng.IntN(int(numWriteCalls))), fd, w.offset(n), w.payload(n), 0); err != nil {
		return err
	}
	return unix.Unlink(name)
}

// renameDirInto fills a new directory outside the tree, renames it in over
// a missing or empty directory, and writes more through its files' open
// descriptors.
func (w *worker) renameDirInto() error {
	name := w.outsideName()
	if err := unix.Mkdir(name, w.dirMode()); err != nil {
		return err
	}
	var fds []int
	defer func() {
		for _, fd := range fds {
			unix.Close(fd)
		}
	}()
	for i := range 1 + w.rng.IntN(filesPerDir) {
		fd, err := unix.Open(name+"/"+files[i], unix.O_RDWR|unix.O_CREAT|unix.O_CLOEXEC, w.mode(false))
		if err != nil {
			return err
		}
		fds = append(fds, fd)
		n := w.smallSize()
		if err := w.issue(callPwrite, fd, w.offset(n), w.payload(n), 0); err != nil {
			return err
		}
	}
	if err := w.renameOutside(name, w.freeDir(), false); err != nil {
		if rerr := os.RemoveAll(name); rerr != nil {
			return rerr
		}
		return err
	}
	for _, fd := range fds {
		n := w.smallSize()
		if err := w.issue(callPwrite, fd, w.offset(n), w.payload(n), 0); err != nil {
			return err
		}
	}
	return nil
}

// renameDirOut moves a directory with everything beneath it out of the
// tree and removes it there.
func (w *worker) renameDirOut() error {
	name := w.outsideName()
	if err := w.renameOutside(name, w.dir(), true); err != nil {
		return err
	}
	return os.RemoveAll(name)
}
