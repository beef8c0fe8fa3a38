//go:build linux

package workload

import "golang.org/x/sys/unix"

// rename moves one file name over another (replacing it if present) with
// rename(2).
func (w *worker) rename() error {
	from, to := w.filePair(false)
	return sysRename(w.abs(from), w.abs(to))
}

// renameat2 moves one file name to another with renameat (flags 0) or
// renameat2 (flags non-zero). Exchanges also swap whole directories.
func (w *worker) renameat2(flags uint) error {
	var from, to string
	switch {
	case flags == unix.RENAME_EXCHANGE && w.rng.IntN(3) == 0:
		from, to = w.dirPair(false)
	case flags == unix.RENAME_NOREPLACE:
		from, to = w.filePair(true)
	default:
		from, to = w.filePair(false)
	}
	a, b, err := w.at2(from, to)
	if err != nil {
		return err
	}
	defer a.release()
	defer b.release()
	if flags == 0 {
		return unix.Renameat(a.fd, a.path, b.fd, b.path)
	}
	return unix.Renameat2(a.fd, a.path, b.fd, b.path, flags)
}

// renameOver replaces an existing file, with rename or renameat.
func (w *worker) renameOver() error {
	from, to := w.filePair(false)
	if w.absent(to) {
		return errNotDone
	}
	return w.renameEither(from, to)
}

// renameDir moves a directory with everything beneath it to a name of the
// same depth, replacing it if it is an empty directory.
func (w *worker) renameDir() error {
	return w.renameEither(w.dirPair(true))
}

func (w *worker) renameEither(from, to string) error {
	if w.rng.IntN(2) == 0 {
		return sysRename(w.abs(from), w.abs(to))
	}
	a, b, err := w.at2(from, to)
	if err != nil {
		return err
	}
	defer a.release()
	defer b.release()
	return unix.Renameat(a.fd, a.path, b.fd, b.path)
}

func (w *worker) unlink() error {
	return sysUnlink(w.abs(w.file()))
}

// unlinkat removes a file, or with AT_REMOVEDIR a directory.
func (w *worker) unlinkat(flags int) error {
	var rel string
	if flags == unix.AT_REMOVEDIR {
		rel = w.mkdirName()
	} else {
		rel = w.file()
	}
	a, err := w.at(rel)
	if err != nil {
		return err
	}
	defer a.release()
	return unix.Unlinkat(a.fd, a.path, flags)
}

func (w *worker) mkdir() error {
	return sysMkdir(w.abs(w.mkdirName()), w.dirMode())
}

func (w *worker) mkdirat() error {
	a, err := w.at(w.mkdirName())
	if err != nil {
		return err
	}
	defer a.release()
	return unix.Mkdirat(a.fd, a.path, w.dirMode())
}

func (w *worker) rmdir() error {
	return sysRmdir(w.abs(w.mkdirName()))
}

func (w *worker) link() error {
	from, to := w.filePair(true)
	return sysLink(w.abs(from), w.abs(to))
}

// linkat links a file, or with AT_SYMLINK_FOLLOW the file a symlink names.
func (w *worker) linkat() error {
	from, to := w.filePair(true)
	a, b, err := w.at2(from, to)
	if err != nil {
		return err
	}
	defer a.release()
	defer b.release()
	flags := 0
	if w.rng.IntN(2) == 0 {
		flags = unix.AT_SYMLINK_FOLLOW
	}
	return unix.Linkat(a.fd, a.path, b.fd, b.path, flags)
}

func (w *worker) symlink() error {
	rel := w.freeFile()
	return sysSymlink(w.linkTarget(rel, false), w.abs(rel))
}

func (w *worker) symlinkat() error {
	rel := w.freeFile()
	a, err := w.at(rel)
	if err != nil {
		return err
	}
	defer a.release()
	return unix.Symlinkat(w.linkTarget(rel, false), a.fd, a.path)
}

// symlinkDangling makes a symlink whose target can never exist, with
// symlink or symlinkat.
func (w *worker) symlinkDangling() error {
	rel := w.freeFile()
	target := w.linkTarget(rel, true)
	if w.rng.IntN(2) == 0 {
		return sysSymlink(target, w.abs(rel))
	}
	a, err := w.at(rel)
	if err != nil {
		return err
	}
	defer a.release()
	return unix.Symlinkat(target, a.fd, a.path)
}
