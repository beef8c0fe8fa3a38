//go:build linux

package replay

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	pathpkg "path"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"

	"golang.org/x/sys/unix"

	"github.com/writecap/writecap/journal"
)

// Options configures an Applier.
type Options struct {
	MaxOpenFiles int          // cached descriptors; default 256 when 0
	Logger       *slog.Logger // nil = slog.Default()
	// DeferBarriers leaves what barriers make durable to the next Sync: for
	// a caller that holds the records durably elsewhere (a replica's spool)
	// and calls Sync before it lets them go.
	DeferBarriers bool
}

// Stats counts records by outcome.
type Stats struct {
	Applied  uint64 // records carried out (barriers and bookmarks included)
	Skipped  uint64 // records that changed nothing: re-sent, already applied, or subject gone
	Barriers uint64 // barrier records made durable
}

// Applier applies records beneath one root. Apply, Sync and Close serialize
// on a mutex; Applied and Stats may be read from any goroutine.
type Applier struct {
	mu     sync.Mutex
	log    *slog.Logger
	rootFD int      // O_PATH; every resolution starts here
	root   *fdEntry // the root directory, opened for fsync; never evicted
	cache  *fdCache
	// fs holds one directory descriptor per filesystem met beneath the
	// root, because syncfs(2) covers a single filesystem.
	fs map[uint64]int

	deferBarriers bool
	err           error // latched: every later Apply returns it
	syncErr       error // a failed fsync or syncfs: durability is no longer known
	closed        bool
	zeroLog       bool // the zero-writing fallocate fallback has been logged

	applied, nApplied, nSkipped, nBarriers atomic.Uint64
}

// Open prepares to apply records beneath root, which must be an existing
// directory.
func Open(root string, opts Options) (*Applier, error) {
	maxOpen := opts.MaxOpenFiles
	switch {
	case maxOpen == 0:
		maxOpen = 256
	case maxOpen < 2:
		return nil, fmt.Errorf("replay: MaxOpenFiles %d: must be 0 (default 256) or at least 2, as one operation holds two directories", maxOpen)
	}
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	rootFD, err := unix.Open(root, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("replay: open root %s: %w", root, err)
	}
	// Opening "." through openat2 also checks that the kernel has it
	// (Linux 5.6), before any record depends on it.
	dirFD, err := openBeneath(rootFD, ".", unix.O_RDONLY|unix.O_DIRECTORY, 0)
	if err != nil {
		unix.Close(rootFD)
		return nil, fmt.Errorf("replay: openat2 root %s: %w", root, err)
	}
	a := &Applier{
		log:    log,
		rootFD: rootFD,
		root:   &fdEntry{fd: dirFD, dir: true},
		cache:  newFDCache(maxOpen),
		fs:     make(map[uint64]int),

		deferBarriers: opts.DeferBarriers,
	}
	if err := a.noteFS(dirFD); err != nil {
		a.Close()
		return nil, fmt.Errorf("replay: fstat root %s: %w", root, err)
	}
	return a, nil
}

// Apply applies one record. Records must come in sequence order: one at or
// below Applied() is a re-send and is skipped; the first may have any Seq,
// and after it each must be Applied()+1, else the error wraps ErrGap and
// nothing changes (the caller may send the missing records). Any other error
// names the record and latches the Applier: this and every later Apply
// return it, and nothing more is applied.
func (a *Applier) Apply(r *journal.Record) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	switch {
	case a.err != nil:
		return a.err
	case a.closed:
		return ErrClosed
	}
	applied := a.applied.Load()
	switch {
	case r.Seq == 0:
		return a.fail(r, fmt.Errorf("%w: sequence number 0", ErrMalformed))
	case r.Seq <= applied:
		a.nSkipped.Add(1)
		return nil
	case applied != 0 && r.Seq != applied+1:
		err := newRecordError(r, fmt.Errorf("%w (expected #%d)", ErrGap, applied+1))
		a.log.Warn("replay: out of order", "err", err)
		return err
	}
	skipped, err := a.apply(r)
	if err != nil {
		return a.fail(r, err)
	}
	a.applied.Store(r.Seq)
	if skipped {
		a.nSkipped.Add(1)
	} else {
		a.nApplied.Add(1)
	}
	return nil
}

func (a *Applier) fail(r *journal.Record, err error) error {
	a.err = newRecordError(r, err)
	a.log.Error("replay: record rejected, applier stopped", "err", a.err)
	return a.err
}

// apply dispatches r. skipped reports a tolerated no-op.
func (a *Applier) apply(r *journal.Record) (skipped bool, err error) {
	if err := check(r); err != nil {
		return false, err
	}
	switch r.Op {
	case journal.OpWrite:
		return a.write(r)
	case journal.OpTruncate:
		return a.truncate(r)
	case journal.OpFallocate:
		return a.fallocate(r)
	case journal.OpCreate:
		return a.create(r)
	case journal.OpMkdir:
		return a.mkdir(r)
	case journal.OpRmdir:
		return a.rmdir(r)
	case journal.OpUnlink:
		return a.unlink(r)
	case journal.OpRename:
		return a.rename(r)
	case journal.OpLink:
		return a.link(r)
	case journal.OpSymlink:
		return a.symlink(r)
	case journal.OpSetattr:
		return a.setattr(r)
	case journal.OpBarrier:
		return a.barrier(r)
	case journal.OpPrune:
		return a.prune(r)
	}
	return false, nil // bookmark: a marker in the stream, nothing on disk
}

// Clear empties root: a replica that is rebuilt, or a mirror's target,
// starts from nothing.
func Clear(root string) error {
	ents, err := os.ReadDir(root)
	if err != nil {
		return fmt.Errorf("replay: clear %s: %w", root, err)
	}
	for _, e := range ents {
		if err := os.RemoveAll(filepath.Join(root, e.Name())); err != nil {
			return fmt.Errorf("replay: clear %s: %w", root, err)
		}
	}
	return nil
}

// Check reports what Apply would refuse in r before touching the disk: an
// unknown operation, a malformed or escaping path, a dirty record. A
// receiver uses it to refuse a record before storing it.
func Check(r *journal.Record) error {
	if err := check(r); err != nil {
		return newRecordError(r, err)
	}
	return nil
}

// check rejects a record before it touches the disk.
func check(r *journal.Record) error {
	switch r.Op {
	case journal.OpBookmark:
		return nil // Path is the bookmark's name, not a path
	case journal.OpDirty:
		return ErrUnresolved
	case journal.OpBarrier:
		if r.Path == "" {
			return nil
		}
	case journal.OpPrune:
		if _, ok := pruneNames(r.Data); !ok {
			return fmt.Errorf("%w: prune list is not NUL-ended names", ErrMalformed)
		}
		if r.Path == "" {
			return nil // the root
		}
	}
	if !r.Op.Valid() {
		return fmt.Errorf("%w: unknown operation", ErrMalformed)
	}
	if !ValidPath(r.Path) {
		return ErrEscape
	}
	switch r.Op {
	case journal.OpRename, journal.OpLink:
		if !ValidPath(r.Path2) {
			return ErrEscape
		}
		// The master cannot have done this, and the tolerant retry
		// (replace the destination) would delete the source.
		if isAncestor(r.Path, r.Path2) || isAncestor(r.Path2, r.Path) {
			return fmt.Errorf("%w: %s into itself", ErrMalformed, r.Op)
		}
		if r.Op == journal.OpRename && (r.Flags&^(unix.RENAME_NOREPLACE|unix.RENAME_EXCHANGE) != 0 ||
			r.Flags == unix.RENAME_NOREPLACE|unix.RENAME_EXCHANGE) {
			return fmt.Errorf("%w: rename flags %#x", ErrMalformed, r.Flags)
		}
	case journal.OpSymlink:
		if !validTarget(r.Path2) {
			return fmt.Errorf("%w: invalid symlink target", ErrMalformed)
		}
	case journal.OpWrite:
		if r.Offset < 0 {
			return fmt.Errorf("%w: negative offset", ErrMalformed)
		}
	case journal.OpTruncate:
		if r.Length < 0 {
			return fmt.Errorf("%w: negative size", ErrMalformed)
		}
	case journal.OpFallocate:
		if r.Offset < 0 || r.Length <= 0 {
			return fmt.Errorf("%w: fallocate range", ErrMalformed)
		}
		// The kernel answers EOPNOTSUPP to this, which must not reach
		// the zero-writing fallback and grow the file.
		if r.Mode&unix.FALLOC_FL_PUNCH_HOLE != 0 && r.Mode&unix.FALLOC_FL_KEEP_SIZE == 0 {
			return fmt.Errorf("%w: punch hole without keep size", ErrMalformed)
		}
	case journal.OpSetattr:
		if r.Flags&^(journal.SetMode|journal.SetOwner|journal.SetAtime|journal.SetMtime) != 0 {
			return fmt.Errorf("%w: setattr flags %#x", ErrMalformed, r.Flags)
		}
	}
	return nil
}

// Sync makes every record applied before it was called durable: it fsyncs
// the files and directories changed since their last fsync, then syncfs(2)
// on every filesystem under the root. It works on a latched Applier, so that
// the records before a rejected one can still be acknowledged, unless the
// latch is itself a failed sync.
func (a *Applier) Sync() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.closed {
		return ErrClosed
	}
	err := a.syncAll()
	if err != nil && a.err == nil {
		a.err = err
		a.log.Error("replay: sync failed, applier stopped", "err", err)
	}
	return err
}

// syncAll fsyncs everything dirty, then syncfs. A failure is permanent:
// after a failed fsync the kernel may have dropped the dirty pages, so what
// is on disk is unknown and no later sync may claim otherwise.
func (a *Applier) syncAll() error {
	if a.syncErr != nil {
		return a.syncErr
	}
	fsync := func(e *fdEntry) error {
		if e.dirty {
			if err := a.fsync(e.fd, e.path); err != nil {
				return err
			}
			e.dirty = false
		}
		return nil
	}
	if err := a.cache.each(fsync); err != nil {
		return err
	}
	if err := fsync(a.root); err != nil {
		return err
	}
	for _, fd := range a.fs {
		if err := unix.Syncfs(fd); err != nil {
			a.syncErr = fmt.Errorf("replay: sync after record #%d: syncfs: %w", a.applied.Load(), err)
			return a.syncErr
		}
	}
	return nil
}

// fsync syncs one descriptor; a failure latches as in syncAll.
func (a *Applier) fsync(fd int, path string) error {
	if a.syncErr != nil {
		return a.syncErr
	}
	if err := unix.Fsync(fd); err != nil {
		a.syncErr = fmt.Errorf("replay: sync after record #%d: fsync %q: %w", a.applied.Load(), "/"+path, err)
	}
	return a.syncErr
}

// Close releases every descriptor. It does not sync: call Sync first.
func (a *Applier) Close() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.closed {
		return nil
	}
	a.closed = true
	a.cache.closeAll()
	errs := []error{unix.Close(a.root.fd), unix.Close(a.rootFD)}
	for _, fd := range a.fs {
		errs = append(errs, unix.Close(fd))
	}
	return errors.Join(errs...)
}

// Applied returns the sequence number of the last record applied (0 before
// the first).
func (a *Applier) Applied() uint64 { return a.applied.Load() }

// Stats returns the counts so far.
func (a *Applier) Stats() Stats {
	return Stats{Applied: a.nApplied.Load(), Skipped: a.nSkipped.Load(), Barriers: a.nBarriers.Load()}
}

// dir returns the descriptor of the directory at path ("" is the root).
// Symlinks along the path are followed only while they stay beneath the root.
func (a *Applier) dir(path string) (*fdEntry, error) {
	if path == "" {
		return a.root, nil
	}
	if e := a.cache.get(path); e != nil && e.dir {
		return e, nil
	}
	fd, err := openBeneath(a.rootFD, path, unix.O_RDONLY|unix.O_DIRECTORY, 0)
	if err != nil {
		return nil, err
	}
	if err := a.noteFS(fd); err != nil {
		unix.Close(fd)
		return nil, err
	}
	return a.cache.add(path, fd, true), nil
}

// parent returns the descriptor of path's parent directory and the final name.
func (a *Applier) parent(path string) (*fdEntry, string, error) {
	d, name := split(path)
	e, err := a.dir(d)
	return e, name, err
}

// file returns a descriptor for writing the regular file at path, creating
// it (0600) if it is missing. The final component is never followed.
func (a *Applier) file(path string) (*fdEntry, error) {
	if e := a.cache.get(path); e != nil && !e.dir {
		return e, nil
	}
	d, name, err := a.parent(path)
	if err != nil {
		return nil, err
	}
	// O_NONBLOCK so that a FIFO left in the replica cannot hang the
	// applier; regular files ignore it.
	const flags = unix.O_WRONLY | unix.O_NOFOLLOW | unix.O_NONBLOCK
	fd, err := openBeneath(d.fd, name, flags, 0)
	if errors.Is(err, ErrEscape) && a.staleSymlink(d, path, name) {
		err = unix.ENOENT
	}
	if err == unix.ENOENT {
		fd, err = openBeneath(d.fd, name, flags|unix.O_CREAT, 0o600)
		if err == nil {
			d.dirty = true
		}
	}
	if err != nil {
		return nil, err
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		unix.Close(fd)
		return nil, err
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		unix.Close(fd)
		return nil, errNotRegular
	}
	return a.cache.add(path, fd, false), nil
}

var errNotRegular = errors.New("replay: not a regular file")

// staleSymlink removes a symlink that stands where the master has a regular
// file, when the link stays inside the root: capture orders racing renames
// and symlink creations only up to a later repair, so the replica can hold
// one briefly. A link pointing out of the root is never removed here; the
// record stays an escape.
func (a *Applier) staleSymlink(d *fdEntry, path, name string) bool {
	target, ok := innerSymlink(d, path, name)
	if !ok || unix.Unlinkat(d.fd, name, 0) != nil {
		return false
	}
	d.dirty = true
	a.log.Info("replaced a symlink where the master has a regular file", "path", path, "target", target)
	return true
}

// innerSymlink reports whether name in d is a symlink whose text keeps it
// beneath the root, and returns that text.
func innerSymlink(d *fdEntry, path, name string) (string, bool) {
	var st unix.Stat_t
	if unix.Fstatat(d.fd, name, &st, unix.AT_SYMLINK_NOFOLLOW) != nil || st.Mode&unix.S_IFMT != unix.S_IFLNK {
		return "", false
	}
	buf := make([]byte, unix.PathMax)
	n, err := unix.Readlinkat(d.fd, name, buf)
	if err != nil {
		return "", false
	}
	target := string(buf[:n])
	dir, _ := split(path)
	if strings.HasPrefix(target, "/") || !confinedJoin(dir, target) {
		return "", false
	}
	return target, true
}

// confinedJoin reports whether target, taken relative to dir, stays beneath
// the root by its text alone.
func confinedJoin(dir, target string) bool {
	j := pathpkg.Join(dir, target)
	return j != ".." && !strings.HasPrefix(j, "../")
}

// noteFS remembers a descriptor on fd's filesystem for syncfs.
func (a *Applier) noteFS(fd int) error {
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return err
	}
	if _, ok := a.fs[st.Dev]; ok {
		return nil
	}
	dup, err := unix.FcntlInt(uintptr(fd), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return err
	}
	a.fs[st.Dev] = dup
	return nil
}
