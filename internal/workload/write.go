//go:build linux

package workload

import (
	"io"

	"golang.org/x/sys/unix"
)

// writeCall is the system call a write is issued with.
type writeCall int

const (
	callWrite       writeCall = iota // lseek, then write
	callPwrite                       // pwrite64
	callWritev                       // lseek, then writev
	callPwritev                      // pwritev
	callPwritev2                     // pwritev2 at an offset
	callPwritev2Cur                  // lseek, then pwritev2 at offset -1: the file position
	numWriteCalls
)

// issue writes b at off on fd with call. Short writes are not errors: the
// capture must record what the kernel reports, whatever it is.
func (w *worker) issue(call writeCall, fd int, off int64, b []byte, flags int) error {
	var err error
	switch call {
	case callWrite:
		if _, err = unix.Seek(fd, off, io.SeekStart); err == nil {
			_, err = unix.Write(fd, b)
		}
	case callPwrite:
		_, err = unix.Pwrite(fd, b, off)
	case callWritev:
		if _, err = unix.Seek(fd, off, io.SeekStart); err == nil {
			_, err = unix.Writev(fd, w.iovecs(b))
		}
	case callPwritev:
		_, err = unix.Pwritev(fd, w.iovecs(b), off)
	case callPwritev2:
		_, err = unix.Pwritev2(fd, w.iovecs(b), off, flags)
	case callPwritev2Cur:
		if _, err = unix.Seek(fd, off, io.SeekStart); err == nil {
			_, err = unix.Pwritev2(fd, w.iovecs(b), -1, flags)
		}
	}
	return err
}

// writeFd returns a read-write descriptor of a file, created if missing: a
// kept one (whose file may since have been renamed or unlinked), or a newly
// opened one that is sometimes kept. done closes it unless it is kept.
func (w *worker) writeFd() (fd int, done func(), err error) {
	if len(w.kept) > 0 && w.rng.IntN(3) == 0 {
		w.arg("kept fd")
		return w.kept[w.rng.IntN(len(w.kept))], func() {}, nil
	}
	fd, err = unix.Openat(w.rootfd, w.file(), unix.O_RDWR|unix.O_CREAT|unix.O_CLOEXEC, 0o644)
	if err != nil {
		return -1, nil, err
	}
	if w.rng.IntN(5) == 0 {
		w.keep(fd)
		return fd, func() {}, nil
	}
	return fd, func() { unix.Close(fd) }, nil
}

// writeOp writes a small random range of a file with call.
func (w *worker) writeOp(call writeCall, flags int) error {
	fd, done, err := w.writeFd()
	if err != nil {
		return err
	}
	defer done()
	n := w.smallSize()
	return w.issue(call, fd, w.offset(n), w.payload(n), flags)
}

// appendOp appends with pwritev2(RWF_APPEND) on an ordinary descriptor.
func (w *worker) appendOp(flags int) error {
	fd, done, err := w.writeFd()
	if err != nil {
		return err
	}
	defer done()
	n := w.smallSize()
	if err := roomFor(fd, n); err != nil {
		return err
	}
	return w.issue(callPwritev2, fd, w.offset(n), w.payload(n), flags|unix.RWF_APPEND)
}

// roomFor returns errNotDone when appending n bytes would grow the file
// past maxFileSize.
func roomFor(fd, n int) error {
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return err
	}
	if st.Size+int64(n) > maxFileSize {
		return errNotDone
	}
	return nil
}

func (w *worker) writeLarge() error {
	fd, done, err := w.writeFd()
	if err != nil {
		return err
	}
	defer done()
	n := w.largeSize()
	call := writeCall(w.rng.IntN(int(numWriteCalls)))
	return w.issue(call, fd, w.offset(n), w.payload(n), 0)
}

// oAppend writes once or twice on an O_APPEND descriptor, where the kernel,
// not the caller, picks the offset.
func (w *worker) oAppend() error {
	fd, err := unix.Openat(w.rootfd, w.file(), unix.O_WRONLY|unix.O_APPEND|unix.O_CREAT|unix.O_CLOEXEC, 0o644)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	for range 1 + w.rng.IntN(2) {
		n := w.smallSize()
		if err := roomFor(fd, n); err != nil {
			return err
		}
		call := []writeCall{callWrite, callWritev, callPwritev2Cur}[w.rng.IntN(3)]
		// The offset is ignored: O_APPEND writes at the end.
		if err := w.issue(call, fd, 0, w.payload(n), 0); err != nil {
			return err
		}
	}
	return nil
}

// syncWrite writes through an O_SYNC or O_DSYNC descriptor: each write is
// a barrier.
func (w *worker) syncWrite(flag int) error {
	fd, err := unix.Openat(w.rootfd, w.file(), unix.O_WRONLY|unix.O_CREAT|unix.O_CLOEXEC|flag, 0o644)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	n := w.smallSize()
	call := writeCall(w.rng.IntN(int(numWriteCalls)))
	return w.issue(call, fd, w.offset(n), w.payload(n), 0)
}

// How a creating open is issued.
type openCall int

const (
	openOpen openCall = iota
	openOpenat
	openOpenat2
	openCreat
)

// create opens a file with O_CREAT (and O_TRUNC if trunc), sometimes
// writes to it, and closes it.
func (w *worker) create(call openCall, trunc bool) error {
	rel := w.file()
	flags := unix.O_WRONLY | unix.O_CREAT | unix.O_CLOEXEC
	if trunc {
		flags |= unix.O_TRUNC
	}
	mode := w.mode(false)
	var fd int
	var err error
	switch call {
	case openOpen:
		fd, err = sysOpen(w.abs(rel), flags, mode)
	case openCreat:
		fd, err = sysCreat(w.abs(rel), mode)
	case openOpenat:
		var a atPath
		if a, err = w.at(rel); err != nil {
			return err
		}
		fd, err = unix.Openat(a.fd, a.path, flags, mode)
		a.release()
	case openOpenat2:
		var a atPath
		if a, err = w.atDir(rel); err != nil {
			return err
		}
		how := unix.OpenHow{Flags: uint64(flags), Mode: uint64(mode), Resolve: unix.RESOLVE_BENEATH}
		fd, err = unix.Openat2(a.fd, a.path, &how)
		a.release()
		// RESOLVE_BENEATH refuses a lookup that a concurrent rename moved
		// outside the starting directory.
		err = tolerate(err, unix.EXDEV, unix.EAGAIN)
	}
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	if w.rng.IntN(2) == 0 {
		n := w.smallSize()
		return w.issue(callPwrite, fd, w.offset(n), w.payload(n), 0)
	}
	return nil
}

// truncate sets a file's size by path or by descriptor, growing it by up to
// 256 KiB or shrinking it.
func (w *worker) truncate(viaFd, grow bool) error {
	var st unix.Stat_t
	var fd int
	var rel string
	if viaFd {
		var done func()
		var err error
		if fd, done, err = w.writeFd(); err != nil {
			return err
		}
		defer done()
		if err := unix.Fstat(fd, &st); err != nil {
			return err
		}
	} else {
		rel = w.file()
		if err := unix.Stat(w.abs(rel), &st); err != nil {
			return err
		}
	}
	var size int64
	switch {
	case grow && st.Size < maxFileSize:
		size = st.Size + 1 + w.rng.Int64N(min(256<<10, maxFileSize-st.Size))
	case !grow && st.Size > 0:
		size = w.rng.Int64N(st.Size)
	default:
		return errNotDone
	}
	if viaFd {
		return unix.Ftruncate(fd, size)
	}
	return unix.Truncate(w.abs(rel), size)
}

// fallocate calls fallocate with mode on a random range; collapse and
// insert ranges get block-aligned ranges inside the file.
func (w *worker) fallocate(mode uint32) error {
	fd, done, err := w.writeFd()
	if err != nil {
		return err
	}
	defer done()
	var off, n int64
	switch mode {
	case unix.FALLOC_FL_COLLAPSE_RANGE, unix.FALLOC_FL_INSERT_RANGE:
		var st unix.Stat_t
		if err := unix.Fstat(fd, &st); err != nil {
			return err
		}
		blocks := st.Size / blockSize
		if mode == unix.FALLOC_FL_COLLAPSE_RANGE {
			// The range must end before the end of the file.
			if blocks < 2 {
				return errNotDone
			}
			first := w.rng.Int64N(blocks - 1)
			off = first * blockSize
			n = (1 + w.rng.Int64N(min(blocks-1-first, 64))) * blockSize
		} else {
			// The offset must be before the end of the file.
			if st.Size == 0 {
				return errNotDone
			}
			off = w.rng.Int64N((st.Size+blockSize-1)/blockSize) * blockSize
			n = (1 + w.rng.Int64N(16)) * blockSize
			if st.Size+n > maxFileSize {
				return errNotDone
			}
		}
		// A size changed by another thread since fstat makes the range invalid.
		return tolerate(unix.Fallocate(fd, mode, off, n), unix.EINVAL, unix.EOPNOTSUPP)
	case unix.FALLOC_FL_ZERO_RANGE:
		if w.rng.IntN(2) == 0 {
			mode |= unix.FALLOC_FL_KEEP_SIZE
		}
	}
	n = 1 + w.rng.Int64N(1<<20)
	off = w.offset(int(n))
	return tolerate(unix.Fallocate(fd, mode, off, n), unix.EOPNOTSUPP)
}

// syncCall is how a barrier is issued.
type syncCall int

const (
	syncFsync syncCall = iota
	syncFdatasync
	syncFileRange
	syncFs
)

// barrier writes a small range and then makes it durable with call.
func (w *worker) barrier(call syncCall) error {
	fd, done, err := w.writeFd()
	if err != nil {
		return err
	}
	defer done()
	n := w.smallSize()
	off := w.offset(n)
	if err := w.issue(callPwrite, fd, off, w.payload(n), 0); err != nil {
		return err
	}
	switch call {
	case syncFsync:
		return unix.Fsync(fd)
	case syncFdatasync:
		return unix.Fdatasync(fd)
	case syncFileRange:
		flags := unix.SYNC_FILE_RANGE_WRITE | unix.SYNC_FILE_RANGE_WAIT_AFTER
		if w.rng.IntN(2) == 0 {
			flags |= unix.SYNC_FILE_RANGE_WAIT_BEFORE
		}
		if w.rng.IntN(4) == 0 {
			n = 0 // to the end of the file
		}
		return unix.SyncFileRange(fd, off, int64(n), flags)
	default:
		return unix.Syncfs(w.rootfd)
	}
}
