//go:build linux

package snapshot

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"golang.org/x/sys/unix"
)

// chunkSize is the unit the frozen step reads and compares in.
const chunkSize = 256 << 10

// racyWindow is the default freeze.racy: a file whose ctime is this close
// to the frozen walk before its copy is compared as if changed. Without
// fine-grained timestamps (before Linux 6.13) ctime has clock-tick
// granularity, so a write just after the thaw, in the same tick as the last
// one before the freeze, would leave ctime as it was.
const racyWindow = 100 * time.Millisecond

// fsNoCOW is FS_NOCOW_FL, which unix does not define.
const fsNoCOW = 0x00800000

// freezeTake is the state of one freeze provider Take.
type freezeTake struct {
	dir     string
	root    string // the view being built: Snapshot.Path
	work    string // copies, named by inode number
	skip    devIno // the staging directory
	reflink bool   // FICLONE is still worth trying
	racy    time.Duration
	copies  map[uint64]*fileCopy
}

// fileCopy is a copy of a regular file in the work directory.
type fileCopy struct {
	base   unix.Stat_t // the file in the frozen walk before it was copied
	walked time.Time   // when that walk began
	cloned bool        // a reflink, which FIEMAP compares block by block
}

// delta is what a copy lacks, read while frozen: the file's size and the
// ranges whose content differs from the copy's (all of it with no copy).
type delta struct {
	size   int64
	chunks []chunk
}

type chunk struct {
	off  int64
	data []byte
}

func (t *freezeTake) ctxErr(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("snapshot: freeze: %s: %w", t.dir, err)
	}
	return nil
}

func (t *freezeTake) workPath(ino uint64) string {
	return filepath.Join(t.work, strconv.FormatUint(ino, 10))
}

// stale reports whether e, a regular file of a frozen walk, may differ from
// its copy: it has none, or its size, mtime or ctime changed since the
// frozen walk before the copy, or that ctime was too recent to tell.
func (t *freezeTake) stale(e *entry) bool {
	c := t.copies[e.st.Ino]
	return c == nil || e.st.Size != c.base.Size || e.st.Mtim != c.base.Mtim || e.st.Ctim != c.base.Ctim ||
		!time.Unix(c.base.Ctim.Unix()).Before(c.walked.Add(-t.racy))
}

// copyFiles copies the regular files of w, each once however many names it
// has, into the work directory; only those pick picks when pick is set.
// Files gone since the walk are skipped: the frozen walk decides.
func (t *freezeTake) copyFiles(ctx context.Context, w *walk, pick func(*entry) bool) error {
	seen := map[uint64]bool{}
	for i := range w.entries {
		e := &w.entries[i]
		if e.kind() != unix.S_IFREG || seen[e.st.Ino] {
			continue
		}
		seen[e.st.Ino] = true
		if pick != nil && !pick(e) {
			continue
		}
		if err := t.ctxErr(ctx); err != nil {
			return err
		}
		delete(t.copies, e.st.Ino)
		dst := t.workPath(e.st.Ino)
		if err := os.Remove(dst); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("snapshot: freeze: %w", err)
		}
		cloned, err := t.copyFile(filepath.Join(t.dir, e.rel), dst, e.st.Ino)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return err
		}
		t.copies[e.st.Ino] = &fileCopy{base: e.st, walked: w.began, cloned: cloned}
	}
	return nil
}

// copyFile copies src, if it is still inode ino, to the new file dst: a
// reflink if it can, else a block copy. It fails with an os.ErrNotExist
// error when src is gone or another file now.
func (t *freezeTake) copyFile(src, dst string, ino uint64) (cloned bool, err error) {
	in, err := openRead(src)
	switch {
	case errors.Is(err, unix.ELOOP):
		return false, fmt.Errorf("snapshot: freeze: %s is a symlink now: %w", src, os.ErrNotExist)
	case errors.Is(err, os.ErrNotExist):
		return false, err
	case err != nil:
		return false, fmt.Errorf("snapshot: freeze: %w", err)
	}
	defer in.Close()
	var st unix.Stat_t
	if err := unix.Fstat(int(in.Fd()), &st); err != nil {
		return false, fmt.Errorf("snapshot: freeze: fstat %s: %w", src, err)
	}
	if st.Ino != ino {
		return false, fmt.Errorf("snapshot: freeze: %s was replaced: %w", src, os.ErrNotExist)
	}
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return false, fmt.Errorf("snapshot: freeze: %w", err)
	}
	defer func() {
		if cerr := out.Close(); cerr != nil && err == nil {
			err = fmt.Errorf("snapshot: freeze: %w", cerr)
		}
	}()
	if t.reflink {
		err := clone(out, in)
		switch {
		case err == nil:
			return true, nil
		case errors.Is(err, unix.EOPNOTSUPP), errors.Is(err, unix.EXDEV), errors.Is(err, unix.ENOTTY), errors.Is(err, unix.ENOSYS):
			// Not between these filesystems: do not ask again.
			t.reflink = false
		case errors.Is(err, unix.EINVAL):
			// Not this file (a swap file, for one): copy it.
		default:
			return false, fmt.Errorf("snapshot: freeze: reflink %s: %w", src, err)
		}
	}
	if _, err := io.Copy(out, in); err != nil {
		return false, fmt.Errorf("snapshot: freeze: copy %s: %w", src, err)
	}
	return false, nil
}

// clone makes out, empty, a reflink of in. btrfs refuses (EINVAL) to clone
// between a nodatacow file and one that is not, and new files take that
// flag from their directory, so out is given in's first.
func clone(out, in *os.File) error {
	if inFlags, err := unix.IoctlGetUint32(int(in.Fd()), unix.FS_IOC_GETFLAGS); err == nil {
		if outFlags, err := unix.IoctlGetUint32(int(out.Fd()), unix.FS_IOC_GETFLAGS); err == nil && (inFlags^outFlags)&fsNoCOW != 0 {
			if err := unix.IoctlSetPointerInt(int(out.Fd()), unix.FS_IOC_SETFLAGS, int(outFlags^fsNoCOW)); err != nil {
				return err
			}
		}
	}
	return unix.IoctlFileClone(int(out.Fd()), int(in.Fd()))
}

// openRead opens a regular file for reading without following a symlink
// and, where allowed, without updating its access time.
func openRead(name string) (*os.File, error) {
	f, err := os.OpenFile(name, os.O_RDONLY|unix.O_NOFOLLOW|unix.O_NOATIME, 0)
	if errors.Is(err, unix.EPERM) {
		f, err = os.OpenFile(name, os.O_RDONLY|unix.O_NOFOLLOW, 0)
	}
	return f, err
}

// collect reads, for each stale regular file of the frozen walk w, what its
// copy lacks, failing with errOverHold past limit bytes. It only reads.
func (t *freezeTake) collect(w *walk, limit int64, check func() error) (map[uint64]*delta, error) {
	held := map[uint64]*delta{}
	bufs := [2][]byte{make([]byte, chunkSize), make([]byte, chunkSize)}
	for i := range w.entries {
		e := &w.entries[i]
		if e.kind() != unix.S_IFREG || held[e.st.Ino] != nil || !t.stale(e) {
			continue
		}
		if err := check(); err != nil {
			return nil, err
		}
		d, err := t.readDelta(e, &limit, bufs, check)
		if err != nil {
			return nil, err
		}
		held[e.st.Ino] = d
	}
	return held, nil
}

// readDelta reads what e's copy lacks, taking what it keeps from *budget.
func (t *freezeTake) readDelta(e *entry, budget *int64, bufs [2][]byte, check func() error) (*delta, error) {
	name := filepath.Join(t.dir, e.rel)
	in, err := openRead(name)
	if err != nil {
		return nil, fmt.Errorf("snapshot: freeze: %w", err)
	}
	defer in.Close()
	d := &delta{size: e.st.Size}
	spans := []span{{0, e.st.Size}}
	var cmp *os.File // a block copy to compare with
	if c := t.copies[e.st.Ino]; c != nil {
		cp, err := os.Open(t.workPath(e.st.Ino))
		if err != nil {
			return nil, fmt.Errorf("snapshot: freeze: %w", err)
		}
		defer cp.Close()
		if !c.cloned {
			cmp = cp
		} else if spans, err = differing(in, cp, e.st.Size); err != nil {
			return nil, fmt.Errorf("snapshot: freeze: %s: %w", name, err)
		}
	}
	buf, cbuf := bufs[0], bufs[1]
	for _, s := range spans {
		for off := s.off; off < s.end; off += chunkSize {
			if err := check(); err != nil {
				return nil, err
			}
			n := int(min(chunkSize, s.end-off))
			if _, err := in.ReadAt(buf[:n], off); err != nil {
				return nil, fmt.Errorf("snapshot: freeze: read %s: %w", name, err)
			}
			if cmp != nil {
				if k, _ := cmp.ReadAt(cbuf[:n], off); k == n && bytes.Equal(buf[:n], cbuf[:n]) {
					continue
				}
			}
			if *budget -= int64(n); *budget < 0 {
				return nil, errOverHold
			}
			d.chunks = append(d.chunks, chunk{off, bytes.Clone(buf[:n])})
		}
	}
	return d, nil
}

// build makes the view at t.root from the frozen walk w, its copies and
// held, what they lacked.
func (t *freezeTake) build(w *walk, held map[uint64]*delta) error {
	first := map[uint64]string{} // inode -> its first name in the view
	for i := range w.entries {
		e := &w.entries[i]
		p := filepath.Join(t.root, e.rel)
		if f, ok := first[e.st.Ino]; ok && e.kind() != unix.S_IFDIR {
			if err := os.Link(f, p); err != nil {
				return fmt.Errorf("snapshot: freeze: %w", err)
			}
			continue
		}
		var err error
		switch e.kind() {
		case unix.S_IFDIR:
			err = os.Mkdir(p, 0o700)
		case unix.S_IFLNK:
			err = os.Symlink(e.target, p)
		case unix.S_IFREG:
			err = t.placeFile(e, p, held[e.st.Ino])
		default:
			if err = unix.Mknod(p, e.st.Mode, int(e.st.Rdev)); err != nil {
				err = fmt.Errorf("mknod %s: %w", p, err)
			}
		}
		if err != nil {
			return fmt.Errorf("snapshot: freeze: %w", err)
		}
		if e.kind() == unix.S_IFDIR {
			continue
		}
		first[e.st.Ino] = p
		if err := setMeta(p, &e.st); err != nil {
			return err
		}
	}
	// Directories last, deepest first: adding entries changes their times.
	for i := len(w.entries) - 1; i >= 0; i-- {
		if e := &w.entries[i]; e.kind() == unix.S_IFDIR {
			if err := setMeta(filepath.Join(t.root, e.rel), &e.st); err != nil {
				return err
			}
		}
	}
	return nil
}

// placeFile puts e's content at p: its copy, moved, patched with d.
func (t *freezeTake) placeFile(e *entry, p string, d *delta) error {
	flags := os.O_WRONLY
	if t.copies[e.st.Ino] == nil {
		flags |= os.O_CREATE | os.O_EXCL
	} else if err := os.Rename(t.workPath(e.st.Ino), p); err != nil || d == nil {
		return err
	}
	f, err := os.OpenFile(p, flags, 0o600)
	if err != nil {
		return err
	}
	for _, c := range d.chunks {
		if _, err := f.WriteAt(c.data, c.off); err != nil {
			f.Close()
			return err
		}
	}
	if err := f.Truncate(d.size); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// setMeta gives p the owner, mode and times of st.
func setMeta(p string, st *unix.Stat_t) error {
	if err := unix.Lchown(p, int(st.Uid), int(st.Gid)); err != nil {
		return fmt.Errorf("snapshot: freeze: chown %s: %w", p, err)
	}
	// After chown, which clears set-user-ID; a symlink's mode is not its own.
	if st.Mode&unix.S_IFMT != unix.S_IFLNK {
		if err := unix.Chmod(p, st.Mode&0o7777); err != nil {
			return fmt.Errorf("snapshot: freeze: chmod %s: %w", p, err)
		}
	}
	ts := []unix.Timespec{st.Atim, st.Mtim}
	if err := unix.UtimesNanoAt(unix.AT_FDCWD, p, ts, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return fmt.Errorf("snapshot: freeze: utimes %s: %w", p, err)
	}
	return nil
}
