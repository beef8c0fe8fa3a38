package journal

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"sort"
	"sync"

	"golang.org/x/sys/unix"
)

// Spool defaults and limits.
const (
	defaultSegmentSize = 64 << 20
	// statfsEvery bounds the bytes written between two looks at the file
	// system's free space for MinFree: a statfs per batch would cost more
	// than small batches do.
	statfsEvery = 4 << 20
)

// Spool errors.
var (
	// ErrSpoolFull means Append refused a batch because MaxBytes or MinFree
	// would be crossed, or the file system is full. Nothing was added:
	// callers keep a compact record of what changed instead (never silently
	// drop).
	ErrSpoolFull = errors.New("journal: spool full")
	// ErrGap means a cursor wants a seq the spool no longer holds.
	ErrGap = errors.New("journal: spool gap")
	// ErrClosed means the spool, or the cursor, was closed.
	ErrClosed = errors.New("journal: spool closed")
)

// IsSpoolFull reports whether err means the spool refused a batch for lack of room.
func IsSpoolFull(err error) bool { return errors.Is(err, ErrSpoolFull) }

// SpoolOptions configures a Spool.
type SpoolOptions struct {
	Dir         string // directory of segment files; created if missing
	MemLimit    int64  // bytes of batches kept in memory before they go to disk; 0: always disk
	SegmentSize int64  // a segment is closed and a new one started past this size (default 64 MiB)
	MaxBytes    int64  // limit on bytes held (memory + disk); 0: no limit
	MinFree     int64  // keep at least this many bytes free on Dir's file system; 0: no check
	Logger      *slog.Logger
}

// A Spool is an ordered queue of batches with consecutive seqs, held in
// memory up to MemLimit and otherwise in segment files in Dir (see "Spool
// segments" in the package documentation). One goroutine appends; any
// number of cursors read, and Release, Sync and Reset may be called, from
// other goroutines.
//
// Disk batches stay consecutive whatever the mix: when a batch has to go to
// disk, the memory batches held after the last disk batch are written first.
// The newest segment is kept when all its batches are released, since it is
// how a reopened spool knows Last; so a reopened spool holds again the
// released batches of its oldest segment and its newest one, and callers
// Release again what they know is done.
type Spool struct {
	dir  *os.File // held open for fsync and for the flock that keeps a second opener out
	log  *slog.Logger
	opts SpoolOptions

	wmu sync.Mutex // serializes Append, Release, Reset, Sync and Close: the file writers
	// Written under wmu only.
	segs     []*segment // oldest first; disk batches are written to the last
	dirDirty bool       // segments created or removed since the last Sync
	free     int64      // free bytes on Dir's file system at the last statfs
	written  int64      // bytes written to disk since that statfs
	full     bool       // the last Append was refused: log only the first refusal
	err      error      // latched: a write could not be undone or an fsync failed

	// Written under wmu and mu, read under either: cursors take only mu.
	mu        sync.Mutex
	entries   []entry
	last      uint64 // the last seq ever appended
	memBytes  int64
	diskBytes int64
	closed    bool
	changed   chan struct{} // made by a waiting cursor; closed when batches arrive, on Reset and on Close
}

// entry is one batch the spool holds: in memory (mem) or at off in seg.
type entry struct {
	first, last uint64
	size        int
	mem         []byte
	seg         *segment
	off         int64
}

// OpenSpool opens or creates the spool in opts.Dir. Existing segments are
// scanned; a torn or corrupt tail (partial or bad-CRC batch, or a seq break,
// anywhere in a segment: everything after the first bad batch is dropped) is
// truncated away and logged with the file and offset, and segments after a
// corrupt one are removed too. The batches found on disk are the spool's
// contents, in order. Only one Spool may have a directory open at a time.
func OpenSpool(opts SpoolOptions) (*Spool, error) {
	switch {
	case opts.Dir == "":
		return nil, errors.New("journal: spool: no Dir")
	case opts.MemLimit < 0 || opts.SegmentSize < 0 || opts.MaxBytes < 0 || opts.MinFree < 0:
		return nil, fmt.Errorf("journal: spool: negative limit in %+v", opts)
	}
	if opts.SegmentSize == 0 {
		opts.SegmentSize = defaultSegmentSize
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	// Segments are named from this path later: a chdir must not move it.
	dirPath, err := filepath.Abs(opts.Dir)
	if err != nil {
		return nil, fmt.Errorf("journal: spool: %w", err)
	}
	opts.Dir = dirPath
	if err := os.MkdirAll(opts.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("journal: spool: %w", err)
	}
	dir, err := os.Open(opts.Dir)
	if err != nil {
		return nil, fmt.Errorf("journal: spool: %w", err)
	}
	if err := unix.Flock(int(dir.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		dir.Close()
		return nil, fmt.Errorf("journal: spool: locking %s (open elsewhere?): %w", opts.Dir, err)
	}
	s := &Spool{dir: dir, log: opts.Logger, opts: opts}
	s.segs, err = loadSegments(dir, s.log, func(g *segment, h *header, off int64) {
		s.entries = append(s.entries, entry{
			first: h.firstSeq, last: h.firstSeq + uint64(h.count-1), size: h.size(), seg: g, off: off,
		})
		g.held++
		s.diskBytes += int64(h.size())
	})
	if err != nil {
		dir.Close()
		return nil, err
	}
	if n := len(s.segs); n > 0 {
		s.last = s.segs[n-1].last
	}
	s.log.Info("spool opened", "dir", opts.Dir, "segments", len(s.segs),
		"first_seq", s.first(), "last_seq", s.last, "bytes", s.diskBytes)
	return s, nil
}

// Append adds one batch: exactly one complete journal batch, as produced by
// Encoder.AppendBatch. Its first seq must be Last()+1 once anything was
// appended (or Reset); otherwise the error wraps ErrInvalid. The spool may
// keep a reference to b in memory: callers must not reuse b. The error wraps
// ErrSpoolFull when a limit would be crossed; then nothing is added.
func (s *Spool) Append(b []byte) error { return s.append(b, verifyBatch) }

// AppendChecked is Append for a batch whose CRC the caller made or has just
// checked (an Encoder's batch, one a Decoder accepted): its header is
// checked, its CRC not computed again.
func (s *Spool) AppendChecked(b []byte) error { return s.append(b, batchHeader) }

func (s *Spool) append(b []byte, check func([]byte) (header, error)) error {
	h, err := check(b)
	if err != nil {
		return fmt.Errorf("journal: spool: append: not one batch: %v: %w", err, ErrInvalid)
	}
	e := entry{first: h.firstSeq, last: h.firstSeq + uint64(h.count-1), size: len(b)}

	s.wmu.Lock()
	defer s.wmu.Unlock()
	switch {
	case s.closed:
		return ErrClosed
	case s.err != nil:
		return s.err
	case e.first == 0:
		return fmt.Errorf("journal: spool: append: batch starts at seq 0; seqs start at 1: %w", ErrInvalid)
	case s.last > 0 && e.first != s.last+1:
		return fmt.Errorf("journal: spool: append: batch starts at seq %d, want %d: %w", e.first, s.last+1, ErrInvalid)
	}
	if held := s.memBytes + s.diskBytes; s.opts.MaxBytes > 0 && held+int64(e.size) > s.opts.MaxBytes {
		return s.refuse(fmt.Errorf("journal: spool: batch of seqs %d to %d (%d bytes) would pass MaxBytes %d with %d held: %w",
			e.first, e.last, e.size, s.opts.MaxBytes, held, ErrSpoolFull))
	}
	if s.opts.MemLimit > 0 && s.memBytes+int64(e.size) <= s.opts.MemLimit {
		e.mem = b
	} else if err := s.toDisk(&e, b); err != nil {
		return err
	}
	s.full = false
	s.mu.Lock()
	s.entries = append(s.entries, e)
	s.last = e.last
	if e.mem != nil {
		s.memBytes += int64(e.size)
	} else {
		s.diskBytes += int64(e.size)
	}
	s.wake()
	s.mu.Unlock()
	return nil
}

// toDisk writes b, the batch e, to the newest segment and points e at it.
// The memory batches held after the last disk batch go first, so that the
// seqs on disk stay consecutive: a reopened spool takes a break for
// corruption.
func (s *Spool) toDisk(e *entry, b []byte) error {
	move := len(s.entries)
	for move > 0 && s.entries[move-1].mem != nil {
		move--
	}
	if move == 0 { // no disk batch is held: the memory batches may stay before b
		move = len(s.entries)
	}
	need := int64(e.size)
	for _, m := range s.entries[move:] {
		need += int64(m.size)
	}
	if err := s.room(need); err != nil {
		return err
	}
	if s.opts.MemLimit > 0 && s.diskBytes == 0 {
		s.log.Info("spool memory full: batches go to disk until the replicas catch up",
			"mem_limit", s.opts.MemLimit, "mem_bytes", s.memBytes, "first_seq", e.first)
	}
	for i := move; i < len(s.entries); i++ {
		m := &s.entries[i]
		g, off, err := s.write(m.mem, m.first, m.last)
		if err != nil {
			return err
		}
		s.mu.Lock()
		m.mem, m.seg, m.off = nil, g, off
		s.memBytes -= int64(m.size)
		s.diskBytes += int64(m.size)
		s.mu.Unlock()
	}
	g, off, err := s.write(b, e.first, e.last)
	if err != nil {
		return err
	}
	e.seg, e.off = g, off
	return nil
}

// write appends the batch b of seqs first to last to the newest segment,
// starting a new one when it is full or b does not follow it, and counts it
// held there.
func (s *Spool) write(b []byte, first, last uint64) (*segment, int64, error) {
	var g *segment
	if n := len(s.segs); n > 0 {
		g = s.segs[n-1]
	}
	switch {
	case g == nil || g.last+1 != first:
		// No disk batch is held (memory batches came between), so every
		// segment holds only released batches. They go first, and durably:
		// beside the new segment they would be a seq break.
		if len(s.segs) > 0 {
			for len(s.segs) > 0 {
				if err := s.dropOldest(); err != nil {
					return nil, 0, err
				}
			}
			if err := s.syncDir(); err != nil {
				return nil, 0, err
			}
		}
		fallthrough
	case g.size > segHeaderSize && g.size+int64(len(b)) > s.opts.SegmentSize:
		var err error
		if g, err = createSegment(s.dir.Name(), first); err != nil {
			if isNoSpace(err) {
				return nil, 0, s.refuse(fmt.Errorf("%w: %w", ErrSpoolFull, err))
			}
			return nil, 0, err
		}
		s.segs = append(s.segs, g)
		s.dirDirty = true
		if err := s.trim(); err != nil {
			return nil, 0, err
		}
	}
	off, intact, err := g.append(b, last)
	if err != nil {
		if !intact {
			s.err = err
		}
		if isNoSpace(err) {
			return nil, 0, s.refuse(fmt.Errorf("%w: %w", ErrSpoolFull, err))
		}
		return nil, 0, err
	}
	g.held++
	s.written += int64(len(b))
	return g, off, nil
}

// room refuses n more bytes on disk when they would leave less than MinFree
// free. It asks the file system at most every statfsEvery bytes, and again
// whenever its estimate says no, since Release or others may have freed
// space.
func (s *Spool) room(n int64) error {
	if s.opts.MinFree == 0 {
		return nil
	}
	if s.written+n > statfsEvery || s.free-s.written-n < s.opts.MinFree {
		var st unix.Statfs_t
		if err := unix.Statfs(s.dir.Name(), &st); err != nil {
			return fmt.Errorf("journal: spool: statfs %s: %w", s.dir.Name(), err)
		}
		s.free = int64(min(st.Bavail*uint64(st.Bsize), math.MaxInt64))
		s.written = 0
	}
	if left := s.free - s.written - n; left < s.opts.MinFree {
		return s.refuse(fmt.Errorf("journal: spool: writing %d bytes would leave %d free on %s, below MinFree %d: %w",
			n, left, s.dir.Name(), s.opts.MinFree, ErrSpoolFull))
	}
	return nil
}

// refuse logs the first of a run of refusals, whose error is err.
func (s *Spool) refuse(err error) error {
	if !s.full {
		s.full = true
		s.log.Warn("spool full: refusing batches until some are released; the caller keeps a compact record instead",
			"dir", s.dir.Name(), "err", err)
	}
	return err
}

// Sync makes every batch appended so far durable on disk: it fsyncs the
// segments written since the last Sync, and the directory when segments were
// created or removed. Memory batches are not written. A failed fsync is
// latched: what reached the disk is no longer known, so every later Append
// and Sync fails until Reset.
func (s *Spool) Sync() error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	switch {
	case s.closed:
		return ErrClosed
	case s.err != nil:
		return s.err
	}
	for _, g := range s.segs {
		if !g.dirty {
			continue
		}
		if err := g.f.Sync(); err != nil {
			s.err = fmt.Errorf("journal: spool: fsync %s: %w", g.path, err)
			return s.err
		}
		g.dirty = false
	}
	if s.dirDirty {
		if err := s.syncDir(); err != nil {
			s.err = err
			return err
		}
	}
	return nil
}

func (s *Spool) syncDir() error {
	if err := syncDir(s.dir); err != nil {
		return err
	}
	s.dirDirty = false
	return nil
}

// First is the first seq held, 0 when the spool is empty.
func (s *Spool) First() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.first()
}

func (s *Spool) first() uint64 {
	if len(s.entries) == 0 {
		return 0
	}
	return s.entries[0].first
}

// Last is the last seq ever appended, even once released (0 before the
// first batch): a reopened spool takes it from its newest segment.
func (s *Spool) Last() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.last
}

// Bytes is the size of the batches held, in memory and on disk.
func (s *Spool) Bytes() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.memBytes + s.diskBytes
}

// DiskBytes is the size of the batches held on disk.
func (s *Spool) DiskBytes() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.diskBytes
}

// Release drops every batch whose last seq is <= upTo: memory is freed and
// segment files whose batches are all released are deleted, except the
// newest (see Spool). A batch straddling upTo stays.
func (s *Spool) Release(upTo uint64) error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if s.closed {
		return ErrClosed
	}
	n := sort.Search(len(s.entries), func(i int) bool { return s.entries[i].last > upTo })
	s.mu.Lock()
	for _, e := range s.entries[:n] {
		if e.seg == nil {
			s.memBytes -= int64(e.size)
		} else {
			s.diskBytes -= int64(e.size)
			e.seg.held--
		}
	}
	clear(s.entries[:n]) // the backing array must not keep released memory batches alive
	s.entries = s.entries[n:]
	s.mu.Unlock()
	return s.trim()
}

// trim deletes the oldest segments while none of their batches is held,
// keeping the newest.
func (s *Spool) trim() error {
	for len(s.segs) > 1 && s.segs[0].held == 0 {
		if err := s.dropOldest(); err != nil {
			return err
		}
	}
	return nil
}

func (s *Spool) dropOldest() error {
	g := s.segs[0]
	if err := g.unlink(); err != nil {
		return err
	}
	s.segs[0] = nil
	s.segs = s.segs[1:]
	s.dirDirty = true
	s.mu.Lock()
	g.gone = true
	idle := g.readers == 0
	s.mu.Unlock()
	if idle {
		g.f.Close() // nothing is lost if this fails: the file is gone
	}
	return nil
}

// Reset drops everything and starts empty, the next batch starting at seq
// last+1; Last returns last afterwards. It is durable when it returns, and it
// clears an error latched by a failed write or fsync, whose segments it
// removed.
func (s *Spool) Reset(last uint64) error {
	if last == math.MaxUint64 {
		return fmt.Errorf("journal: spool: reset to seq %d leaves no seq to append: %w", last, ErrInvalid)
	}
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if s.closed {
		return ErrClosed
	}
	s.mu.Lock()
	clear(s.entries)
	s.entries = s.entries[:0]
	s.memBytes, s.diskBytes = 0, 0
	s.last = last
	s.wake()
	s.mu.Unlock()

	for len(s.segs) > 0 {
		if err := s.dropOldest(); err != nil {
			return err
		}
	}
	// The directory must not show the old segments beside the new one.
	if err := s.syncDir(); err != nil {
		return err
	}
	g, err := createSegment(s.dir.Name(), last+1)
	if err != nil {
		return err
	}
	s.segs = append(s.segs, g)
	if err := g.f.Sync(); err != nil {
		return fmt.Errorf("journal: spool: fsync %s: %w", g.path, err)
	}
	g.dirty = false
	if err := s.syncDir(); err != nil {
		return err
	}
	s.err = nil
	s.log.Info("spool reset", "dir", s.dir.Name(), "last_seq", last)
	return nil
}

// Close closes the files and wakes waiting cursors; it deletes nothing and
// writes nothing, so memory batches are lost.
func (s *Spool) Close() error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if s.closed {
		return nil
	}
	var errs []error
	s.mu.Lock()
	s.closed = true
	s.entries = nil
	s.wake()
	for _, g := range s.segs {
		g.gone = true
		if g.readers == 0 {
			errs = append(errs, g.f.Close())
		}
	}
	s.mu.Unlock()
	errs = append(errs, s.dir.Close()) // drops the flock
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("journal: spool: close: %w", err)
	}
	return nil
}

// wake lets waiting cursors look again. The caller holds mu.
func (s *Spool) wake() {
	if s.changed != nil {
		close(s.changed)
		s.changed = nil
	}
}

// find returns the entry holding seq, or says to wait when seq lies past
// everything appended. The caller holds mu.
func (s *Spool) find(seq uint64) (e entry, wait bool, err error) {
	if s.closed {
		return entry{}, false, ErrClosed
	}
	i := sort.Search(len(s.entries), func(i int) bool { return s.entries[i].last >= seq })
	switch {
	case i < len(s.entries) && s.entries[i].first <= seq:
		return s.entries[i], false, nil
	case i == len(s.entries) && seq > s.last:
		return entry{}, true, nil
	}
	return entry{}, false, fmt.Errorf("journal: spool: seq %d is not held (first %d, last %d): %w", seq, s.first(), s.last, ErrGap)
}

// A Cursor reads a spool's batches in order. A Cursor is used by one
// goroutine, except that Close may be called from any.
type Cursor struct {
	s    *Spool
	next uint64 // the seq the next batch must hold
	buf  []byte // the last disk batch read
	done chan struct{}
	once sync.Once
}

// Cursor returns a cursor whose first batch is the one holding seq from. If
// from < First(), Next returns an error wrapping ErrGap; if from > Last(),
// Next waits for the batch that holds it. Any number of cursors may exist.
func (s *Spool) Cursor(from uint64) *Cursor {
	return &Cursor{s: s, next: from, done: make(chan struct{})}
}

// Next returns the next batch and its first and last seq. A disk batch is
// read into a buffer of the cursor's, valid until the next call; a memory
// batch is the slice given to Append: both are read-only. The batch holding
// the cursor's seq is returned whole even when that seq lies inside it (the
// caller skips records it has). When the cursor has caught up, Next blocks
// until a batch is appended, ctx ends (ctx.Err()), or the spool or cursor is
// closed (ErrClosed). A batch released before the cursor read it gives an
// error wrapping ErrGap; a disk batch that fails its CRC one wrapping
// ErrCorrupt, naming the file and offset.
func (c *Cursor) Next(ctx context.Context) (b []byte, first, last uint64, err error) {
	s := c.s
	for {
		select {
		case <-c.done:
			return nil, 0, 0, ErrClosed
		default:
		}
		s.mu.Lock()
		e, wait, err := s.find(c.next)
		if e.seg != nil {
			e.seg.readers++
		}
		if wait {
			if s.changed == nil {
				s.changed = make(chan struct{})
			}
			changed := s.changed
			s.mu.Unlock()
			select {
			case <-changed:
				continue
			case <-ctx.Done():
				return nil, 0, 0, ctx.Err()
			case <-c.done:
				return nil, 0, 0, ErrClosed
			}
		}
		s.mu.Unlock()
		if err != nil {
			return nil, 0, 0, err
		}
		if e.seg == nil {
			c.next = e.last + 1
			return e.mem, e.first, e.last, nil
		}
		// Read without mu: a batch's bytes never change once written, and
		// the descriptor stays open while readers counts this cursor.
		c.buf, err = e.seg.readBatch(c.buf, e.off, e.size, e.first, e.last)
		s.done(e.seg)
		if err != nil {
			return nil, 0, 0, err
		}
		c.next = e.last + 1
		return c.buf, e.first, e.last, nil
	}
}

// done ends a cursor's read of g, closing g if it was removed meanwhile.
func (s *Spool) done(g *segment) {
	s.mu.Lock()
	g.readers--
	last := g.readers == 0 && g.gone
	s.mu.Unlock()
	if last {
		g.f.Close()
	}
}

// Close ends the cursor: a Next blocked in another goroutine returns
// ErrClosed, and so does every later call.
func (c *Cursor) Close() {
	c.once.Do(func() { close(c.done) })
}
