package capture

import (
	"fmt"
	"log/slog"
	"math"

	"golang.org/x/sys/unix"

	"github.com/writecap/writecap/journal"
	"github.com/writecap/writecap/resync"
)

const (
	// flushBytes bounds the data held in one call to the sink.
	flushBytes = 8 << 20
	// reconcileAfter forces a pending reconciliation even while events keep
	// arriving, so a busy tree is not left differing for long.
	reconcileAfter = 100000
	toEOF          = math.MaxInt64
)

// processor owns the model of the tree and turns ordered events into
// records. It runs in one goroutine.
type processor struct {
	s    *Source
	log  *slog.Logger
	root string
	sink Sink
	t    *tree

	seq      uint64
	out      []journal.Record
	outBytes int
	held     []*evbuf // samples whose bytes records in out still point into
	recycle  func(*evbuf)

	races    raceTable
	ns       nsRaces
	mapped   map[uint64]bool
	deferred map[uint64]span // dirty ranges whose file has no readable path yet

	reconcileWhy  string // non-empty: a reconciliation is due
	reconcileFull bool
	pendingSince  uint64
	lastCounts    [cntMax]uint64
	lastMisses    uint64
	// kernel sequence numbers around the last walk of the master's tree
	// (scanStart is set as a walk begins)
	scanStart, scanEnd uint64
	scanFull           bool
	assert             bool             // walks send every name and attribute again
	walkFirst          map[*node]string // first name a walk met for each file
	walkDirty          []*node          // files whose bytes a walk sends after the names
	nsTrouble          bool             // names raced or the model missed one
	lossDue            []dueLoss        // in the order found, so by after
	kseq               uint64           // the last kernel seq processed
	unknownDirIno      map[*node]bool
	touched            []*node          // directories the current event changed
	suspect            map[*node]bool   // directories whose contents are sent again
	base               *resync.Manifest // what the replicas hold, during the initial walk
	based              map[*node]baseFile
	baseGone           map[string]bool  // replica paths a record of the walk against base moved or removed
	repairHeld         *resync.Manifest // during a repair: what the replicas held of files changed whole
	repairSince        *resync.Changed  // and what records changed since that manifest
	flushErr           error
	warnedTooDeep      bool
	// silent: a walk only learns the tree (resume), sending nothing; what
	// changed since resumeSince goes into resumed
	silent      bool
	resumeSince int64
	resumed     *journal.Changes
	resumeDirs  map[uint64]string
	// distrust, during a repair, holds the files whose bytes it sends: the
	// replica's copy of anything it links a name to is not trusted.
	distrust map[*node]bool
}

// dueLoss is a lost range to read back once every seq below after has
// been processed.
type dueLoss struct {
	ino    uint64
	lo, hi int64
	after  uint64
}

// repairLosses reads back the lost ranges that are due, or all of them.
func (p *processor) repairLosses(all bool) {
	i := 0
	for ; i < len(p.lossDue); i++ {
		d := p.lossDue[i]
		if !all && p.kseq+1 < d.after {
			break
		}
		p.dirtyIno(d.ino, d.lo, d.hi)
	}
	p.lossDue = p.lossDue[i:]
}

func newProcessor(s *Source, sink Sink) (*processor, error) {
	var st unix.Stat_t
	if err := unix.Stat(s.root, &st); err != nil {
		return nil, fmt.Errorf("capture: root %s: %w", s.root, err)
	}
	return &processor{
		s: s, log: s.cfg.Logger, root: s.root, sink: sink, t: newTree(st.Ino),
		races: newRaceTable(), mapped: map[uint64]bool{}, deferred: map[uint64]span{},
		unknownDirIno: map[*node]bool{}, suspect: map[*node]bool{},
		based: map[*node]baseFile{},
	}, nil
}

// initial sends the whole tree as it is now. Capture is already running, so
// whatever changes during the walk follows as events.
func (p *processor) initial() error {
	p.s.stats.reconciles.Add(1)
	if p.s.cfg.Resume != nil {
		return p.resume(p.s.cfg.Resume)
	}
	if p.s.cfg.LearnOnly && p.s.cfg.Base == nil {
		// Nothing counts as changed since: the walk only learns.
		p.silent, p.resumeSince = true, math.MaxInt64
		err := p.reconcile(true)
		p.silent = false
		return err
	}
	p.rebuildAt(p.s.cfg.Base)
	err := p.reconcileWith(p.s.cfg.Base)
	if err != nil {
		return err
	}
	if p.flushErr != nil {
		return p.flushErr
	}
	return p.flush()
}

func (p *processor) loop(r *reader) error {
	p.recycle = r.put
	for batch := range r.out {
		for i, it := range batch {
			switch {
			case it.ev != nil:
				if err := p.event(it.ev); err != nil {
					return err
				}
			case it.tick:
				if err := p.tick(it.counts, it.misses); err != nil {
					return err
				}
			case it.done:
				return p.finish()
			}
			if p.flushErr != nil {
				return p.flushErr
			}
			if p.reconcileWhy != "" && p.pendingSince+reconcileAfter < p.s.stats.events.Load() {
				if err := p.runReconcile(); err != nil {
					return err
				}
			}
			idle := i == len(batch)-1 && len(r.out) == 0
			if idle {
				p.learnDirs()
			}
			if idle && p.reconcileWhy != "" {
				if err := p.runReconcile(); err != nil {
					return err
				}
			}
			if idle || p.outBytes >= flushBytes {
				if err := p.flush(); err != nil {
					return err
				}
			}
		}
		r.putBatch(batch)
	}
	return p.flush()
}

// finish runs once everything captured has been processed.
func (p *processor) finish() error {
	p.repairLosses(true)
	p.retryDeferred()
	if len(p.deferred) > 0 && p.reconcileWhy == "" {
		p.needReconcile("dirty ranges of files without a readable path", false)
	}
	for ino := range p.mapped {
		p.dirtyIno(ino, 0, toEOF)
	}
	// A last walk of the names, while nothing is in flight: it costs a
	// directory scan and a record per entry, and catches an ordering the
	// race checks missed. It sends every name and attribute again, since
	// the replica may have had to tolerate records that raced.
	p.assert = true
	// Names that raced may have routed bytes to the wrong replica file
	// before a walk put the names right: send the bytes again too.
	p.needReconcile("final check of names", p.nsTrouble)
	if p.reconcileWhy != "" {
		if err := p.runReconcile(); err != nil {
			return err
		}
	}
	p.assert = false
	if p.flushErr != nil {
		return p.flushErr
	}
	return p.flush()
}

func (p *processor) needReconcile(why string, full bool) {
	p.nsTrouble = true
	if p.reconcileWhy == "" {
		p.reconcileWhy = why
		p.pendingSince = p.s.stats.events.Load()
	}
	p.reconcileFull = p.reconcileFull || full
}

func (p *processor) runReconcile() error {
	full, why := p.reconcileFull, p.reconcileWhy
	p.reconcileWhy, p.reconcileFull = "", false
	p.s.stats.reconciles.Add(1)
	before := p.seq
	if err := p.reconcile(full); err != nil {
		return err
	}
	p.log.Info("reconciled the replica's names with the master", "root", p.root, "reason", why,
		"content", full, "records", p.seq-before)
	for d := range p.suspect {
		delete(p.suspect, d)
		if pth, ok := p.t.path(d); ok && !full {
			p.resend(d, pth)
		}
	}
	p.retryDeferred()
	return nil
}

func (p *processor) emit(r journal.Record) {
	if p.silent {
		return
	}
	p.seq++
	r.Seq = p.seq
	p.out = append(p.out, r)
	p.outBytes += len(r.Data)
	if p.outBytes >= flushBytes && p.flushErr == nil {
		// Repairs can read whole trees back: hand them on as they grow.
		p.flushErr = p.flush()
	}
}

func (p *processor) flush() error {
	if len(p.out) > 0 {
		if err := p.sink.Write(p.out); err != nil {
			return fmt.Errorf("capture: sink: %w", err)
		}
		p.s.stats.records.Add(uint64(len(p.out)))
		p.s.lastSeq.Store(p.seq)
	}
	for i := range p.out {
		p.out[i] = journal.Record{}
	}
	p.out = p.out[:0]
	p.outBytes = 0
	for _, eb := range p.held {
		if p.recycle != nil {
			p.recycle(eb)
		}
	}
	p.held = p.held[:0]
	return nil
}

// rebuildAt tells a Rebuilder sink that a full copy against base starts
// with the next record; everything before it has been handed on.
func (p *processor) rebuildAt(base *resync.Manifest) {
	if rb, ok := p.sink.(Rebuilder); ok {
		rb.RebuildAt(p.seq+1, base)
	}
}

// rebuild sends the whole tree again: every name and attribute, and every
// byte or, against a base, the blocks that differ from it.
func (p *processor) rebuild(base *resync.Manifest) error {
	if err := p.flush(); err != nil {
		return err
	}
	p.s.stats.reconciles.Add(1)
	before, kept := p.seq, p.s.stats.baseSkipped.Load()
	p.rebuildAt(base)
	p.assert = true
	err := p.reconcileWith(base)
	p.assert = false
	if err != nil {
		return err
	}
	p.log.Info("sent a full copy of the tree", "root", p.root, "records", p.seq-before,
		"against_replica_manifest", base != nil, "bytes_the_replica_had", p.s.stats.baseSkipped.Load()-kept)
	return p.flush()
}

// reconcileWith walks the master's tree against base (nil: none).
func (p *processor) reconcileWith(base *resync.Manifest) error {
	p.base, p.baseGone = base, map[string]bool{}
	defer func() { p.base, p.baseGone = nil, nil }()
	return p.reconcile(true)
}

// tick checks the kernel's counters for loss and turns it into repairs.
func (p *processor) tick(c [cntMax]uint64, misses uint64) error {
	if p.s.resync.Swap(false) {
		if err := p.rebuild(p.s.resyncBase.Swap(nil)); err != nil {
			return err
		}
	}
	if p.s.repair.Swap(false) {
		if err := p.repairChanges(); err != nil {
			return err
		}
	}
	if p.s.snapDirs.Swap(false) {
		if err := p.snapshotDirs(); err != nil {
			return err
		}
	}
	p.learnDirs() // the loop may not go idle under a steady load
	last := p.lastCounts
	p.lastCounts = c
	if misses != p.lastMisses {
		p.log.Warn("the kernel skipped capture programs while another BPF program ran on the same CPU; repairing from the master",
			"skipped_total", misses)
		p.lastMisses = misses
		p.needReconcile("capture programs skipped by the kernel", true)
	}
	if c[cntRingFull] != last[cntRingFull] {
		p.s.stats.lost.Store(c[cntRingFull])
		p.log.Warn("ring buffer full: changes lost in the kernel are repaired from the master's files",
			"lost_total", c[cntRingFull], "ring_bytes", p.s.cfg.RingSize)
		// Samples reserved before the loss may still be on their way (out
		// of order, or not yet submitted): read the ranges back only after
		// every seq taken so far has been processed, or an older sample
		// would land on top of the newer bytes read back.
		after, err := p.s.k.seqNow()
		if err != nil {
			return err
		}
		if err := p.s.k.takeLosses(func(key lossKey, lo, hi int64) {
			p.lossDue = append(p.lossDue, dueLoss{ino: key.Ino, lo: lo, hi: hi, after: after})
		}); err != nil {
			return err
		}
		p.repairLosses(false)
	}
	if c[cntMetaLost] != last[cntMetaLost] || c[cntInflightFull] != last[cntInflightFull] {
		p.s.stats.metaLost.Store(c[cntMetaLost])
		p.needReconcile("metadata events lost in the kernel", true)
	}
	if c[cntLossFull] != last[cntLossFull] {
		p.needReconcile("kernel loss map full", true)
	}
	if c[cntUringNames] != last[cntUringNames] {
		// The kernel saw a change of names through io_uring, but not the
		// names themselves.
		p.needReconcile("names changed through io_uring", false)
	}
	if c[cntUringTrunc] != last[cntUringTrunc] {
		p.needReconcile("a file opened with O_TRUNC through io_uring", true)
	}
	if c[cntAIOMany] != last[cntAIOMany] {
		// One io_submit or io_getevents carried more requests than the
		// kernel looks at: the writes past them are found by a walk.
		p.needReconcile("more Linux AIO requests in one call than captured", true)
	}
	if c[cntUringLost] != last[cntUringLost] {
		// An io_uring completion overflowed the completion queue under a
		// user_data another request in flight shared, or a request the
		// kernel could not track or resolve completed unseen.
		p.needReconcile("io_uring completions capture could not tell apart", true)
	}
	if c[cntTooDeep] != last[cntTooDeep] && !p.warnedTooDeep {
		p.warnedTooDeep = true
		p.log.Warn("files nested deeper than the kernel walk limit on a protected file system are not captured",
			"limit", maxDepth)
	}
	if c[cntRingFull] != last[cntRingFull] || c[cntMetaLost] != last[cntMetaLost] || len(p.lossDue) > 0 || p.reconcileWhy != "" {
		// Changes lost in the kernel, or names to put right, are repaired
		// later: marks wait for them.
		return nil
	}
	return p.answerMarks()
}
