package master

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/writecap/writecap/capture"
	"github.com/writecap/writecap/journal"
	"github.com/writecap/writecap/resync"
	"github.com/writecap/writecap/stream"
)

// queue is the master's spool seen from both ends: the capture sink appends
// batches, the replicas' feeds read them and release what every replica has
// made durable. It also knows where full copies of the tree begin, so a
// replica that cannot resume starts over from one.
//
// When the spool reaches its limits with no replica taking batches, it
// stops storing them and keeps a compact record of what they changed
// instead; the first replica to come back gets a repair of exactly that.
// Records dropped meanwhile take no sequence numbers: the stream goes on
// from the spool's last batch with the repair, so a replica that resumes
// from the spool sees no gap.
type queue struct {
	m     *Master
	spool *journal.Spool
	enc   *journal.Encoder
	// full asks capture for a full copy of the tree against base (nil: as
	// to an empty replica).
	full func(base *resync.Manifest)
	// ask, after a restart, waits for the replicas' manifests of what the
	// repair of the earlier master's changes sends whole.
	ask *heldAsk

	mu        sync.Mutex
	rebuild   uint64           // first seq of the latest full copy the spool holds whole; 0: none
	rebuiltOn *resync.Manifest // what that copy was made against: nil, an empty replica
	rebuilt   chan struct{}    // closed and replaced when rebuild moves
	copying   chan struct{}    // one full copy asked of capture at a time
	diffs     uint64           // full copies made against a replica's manifest
	released  chan struct{}    // closed and replaced when the spool releases
	changes   *journal.Changes // while overflowing: what the dropped records changed
	repairing bool             // a repair of changes has been asked of capture
	shift     uint64           // capture seqs dropped so far: stream seq = capture seq - shift
	dropped   uint64           // records dropped while overflowing
	overflows uint64           // times the spool filled up
	repairs   uint64           // repairs sent for dropped records
	evicted   uint64           // times a replica away lost its place in the spool
	resumes   uint64           // replicas of an earlier master repaired rather than rebuilt
	held      *heldFiles       // a replica's manifest of the files the pending repair sends whole
	marks     []mark           // capture times of recent batches, for lag
	bytes     uint64           // batch bytes appended, all time
}

// mark is when a batch was captured and how many bytes came before it.
type mark struct {
	last uint64
	at   time.Time
	end  uint64 // queue bytes up to and including this batch
	size uint64
}

const (
	// maxMarks bounds the lag bookkeeping; older marks go first.
	maxMarks = 1 << 16
	// maxChangedPaths bounds the record kept while overflowing; past it
	// the repair sends the whole tree again.
	maxChangedPaths = 1 << 20
	// maxFullWait bounds how long capture waits for a connected replica to
	// make room in a full spool before it keeps a record of changes
	// instead: a replica stuck (its disk full) must not stall capture.
	maxFullWait = 10 * time.Second
)

// What Write does when the spool is full.
type fullAction int

const (
	fullWait     fullAction = iota // a connected replica is behind: it makes room
	fullEvict                      // the connected replicas have it all: drop what only others need
	fullOverflow                   // nobody is taking batches: keep a record of changes
)

// caughtUp starts the repair of dropped changes for a replica that has
// received everything the spool holds, without waiting for it to reconnect.
func (q *queue) caughtUp(received uint64) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if received >= q.spool.Last() {
		q.askRepair()
	}
}

var _ interface {
	capture.Sink
	capture.Rebuilder
	capture.Repairer
	capture.DirWatcher
} = (*queue)(nil)

// Write is the capture sink: one batch per call.
func (q *queue) Write(recs []journal.Record) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.changes != nil {
		if err := q.m.al.append(q.m.epoch, q.spool.Last(), recs); err != nil {
			return err
		}
		q.drop(recs)
		return nil
	}
	trace := q.m.log.Enabled(context.Background(), slog.LevelDebug)
	for i := range recs {
		recs[i].Seq -= q.shift
		if trace {
			q.m.log.Debug("record", "record", recs[i].String())
		}
	}
	last := recs[len(recs)-1].Seq
	// What a batch changes is on record before any replica can see it.
	if err := q.m.al.append(q.m.epoch, last, recs); err != nil {
		return err
	}
	b, err := q.enc.AppendBatch(nil, recs)
	if err != nil {
		return err
	}
	var waited time.Duration
	evicted := false
	for {
		err := q.spool.AppendChecked(b)
		if err == nil {
			break
		}
		if !journal.IsSpoolFull(err) {
			return err
		}
		action := q.m.whenFull()
		switch {
		case action == fullWait && waited < maxFullWait:
			// A replica is taking batches: wait for it to make room rather
			// than drop. Capture backs up into the kernel ring, whose
			// losses are repaired from the files.
			ch := q.released
			q.mu.Unlock()
			start := time.Now()
			select {
			case <-ch:
			case <-time.After(time.Second):
			}
			waited += time.Since(start)
			q.mu.Lock()
		case action == fullEvict && !evicted:
			// The replicas connected have everything: the spool only
			// holds what replicas away lack. They start over when back.
			evicted = true
			upTo := q.m.evict()
			q.evicted++
			q.m.log.Warn("spool limit reached: releasing what only replicas away still need; they are rebuilt when they return",
				"cause", err, "released_up_to", upTo)
			if err := q.spool.Release(upTo); err != nil {
				return err
			}
		default:
			return q.startOverflow(recs, err)
		}
	}
	q.bytes += uint64(len(b))
	q.marks = append(q.marks, mark{last: last, at: time.Now(), end: q.bytes, size: uint64(len(b))})
	if len(q.marks) > maxMarks {
		q.marks = q.marks[len(q.marks)-maxMarks/2:]
	}
	return nil
}

// startOverflow stops storing batches: the spool never grows past its
// limits and capture never stops.
func (q *queue) startOverflow(recs []journal.Record, cause error) error {
	q.overflows++
	q.changes = journal.NewChanges(maxChangedPaths)
	q.m.log.Warn("spool limit reached with no replica taking batches: keeping a record of what changed instead of the changes; the first replica back gets a repair of exactly that",
		"cause", cause, "spool_bytes", q.spool.Bytes(), "last_seq", q.spool.Last())
	q.drop(recs)
	return nil
}

func (q *queue) drop(recs []journal.Record) {
	for i := range recs {
		q.changes.Add(&recs[i])
	}
	q.dropped += uint64(len(recs))
	q.shift += uint64(len(recs))
}

// askRepair asks capture, once, for the repair of the changes kept while
// the spool was full; q.mu is held.
func (q *queue) askRepair() {
	if q.changes != nil && !q.repairing {
		q.repairing = true
		q.m.source.Repair()
	}
}

// RepairAt is called by capture before the repair's first record.
func (q *queue) RepairAt(seq uint64) (*journal.Changes, *resync.Manifest, *resync.Changed) {
	q.mu.Lock()
	ch, held, last := q.changes, q.held, seq-q.shift-1
	q.changes, q.repairing = nil, false
	if ch != nil {
		q.repairs++
	}
	q.mu.Unlock()
	defer func() {
		q.mu.Lock()
		q.held = nil // the spool may release past its point again
		q.mu.Unlock()
	}()
	if ch == nil {
		return nil, nil, nil
	}
	q.m.log.Info("repairing what the replicas missed while the spool was full", "paths", ch.Len(),
		"everything", ch.Full(), "from", last+1, "replica_manifest_files", heldLen(held), "manifest_at", heldAt(held))
	if held == nil {
		return ch, nil, nil
	}
	// Every replica that resumes from the spool has applied the same
	// records before the repair: the manifest plus what those after it
	// changed is what each holds. The spool keeps them: release stops at
	// the manifest's point while the repair is pending.
	since, err := q.changedInSpool(context.Background(), held.at, last)
	if err != nil {
		q.m.log.Warn("the repair sends the files whole", "err", err)
		return ch, nil, nil
	}
	return ch, held.m, since
}

// heldFiles is what a replica holds of the files a repair sends whole, at
// seq at.
type heldFiles struct {
	m  *resync.Manifest
	at uint64
}

func heldAt(h *heldFiles) uint64 {
	if h == nil {
		return 0
	}
	return h.at
}

func heldLen(h *heldFiles) int {
	if h == nil {
		return 0
	}
	return len(h.m.Entries)
}

// wholePaths are the entries the pending repair sends whole, when it is not
// under way; q.mu is held.
func (q *queue) wholePaths() []string {
	if q.changes == nil || q.repairing || q.changes.Full() {
		return nil
	}
	// A file replaced (say, by a rename over it) is asked about too: what
	// the replica held there is often most of it.
	return q.changes.WholePaths()
}

// regularFiles keeps of paths those the master holds as regular files.
func (q *queue) regularFiles(paths []string) []string {
	return slices.DeleteFunc(paths, func(rel string) bool {
		fi, err := os.Lstat(filepath.Join(q.m.cfg.Source, rel))
		return err != nil || !fi.Mode().IsRegular()
	})
}

// RebuildAt is called by capture before a full copy's first record.
func (q *queue) RebuildAt(seq uint64, base *resync.Manifest) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.changes != nil {
		// A full copy makes the record of changes moot, but only for a
		// replica that starts over from it: one resuming from the spool
		// would miss the removals. A hole of one seq before the copy makes
		// every cursor and resume from the spool fail, so they start over.
		q.changes, q.repairing = nil, false
		q.shift--
		if err := q.spool.Reset(seq - q.shift - 1); err != nil {
			q.m.log.Error("spool reset failed", "err", err)
			return
		}
	}
	q.setRebuild(seq-q.shift, base)
}

func (q *queue) setRebuild(seq uint64, base *resync.Manifest) {
	q.rebuild, q.rebuiltOn = seq, base
	close(q.rebuilt)
	q.rebuilt = make(chan struct{})
}

// How a replica's session starts.
type startHow int

const (
	startResume  startHow = iota // from the spool, right after what it has
	startRepair                  // keeps its data: a repair of what an earlier master recorded follows
	startRebuild                 // throws its data away: a full copy follows
	startDiff                    // keeps its data: a full copy against its manifest follows
)

// start decides where a replica in state (epoch, durable; its tree at seq
// holds once it applied all it has) resumes: right
// after durable if the spool holds everything since; from this master's
// first record, a repair, if an earlier master's activity record covers
// what it lacks. Otherwise it asks the replica what it holds: an empty
// replica starts at a full copy (one the spool holds, or a new one); one
// with data keeps it and gets a full copy made against its manifest, which
// sends only what differs. A replica that resumes while changes were
// dropped gets their repair after the spool. id is the replica's feed.
func (q *queue) start(ctx context.Context, id int, epoch, durable, holds uint64, peer stream.Peer) (uint64, startHow, error) {
	q.mu.Lock()
	if epoch == q.m.epoch && q.holds(durable+1) {
		paths := q.wholePaths()
		q.mu.Unlock()
		if paths = q.regularFiles(paths); len(paths) > 0 {
			// The repair of what the spool could not keep sends these files
			// whole; what the replica holds of them spares their blocks.
			m, err := manifestOfPaths(ctx, peer, q.m.cfg.BlockSize, paths)
			switch {
			case ctx.Err() != nil:
				return 0, startResume, ctx.Err()
			case err != nil:
				q.m.log.Warn("the repair sends the files whole", "err", err)
			default:
				q.mu.Lock()
				if q.changes != nil && !q.repairing {
					q.held = &heldFiles{m: m, at: holds}
				}
				q.mu.Unlock()
			}
		}
		q.mu.Lock()
		q.askRepair()
		q.mu.Unlock()
		return durable + 1, startResume, nil
	}
	if q.repairable(epoch, durable) {
		q.mu.Unlock()
		takes := true
		if q.ask != nil {
			var err error
			if takes, err = q.describe(ctx, id, peer); err != nil {
				return 0, startRepair, err
			}
		}
		q.mu.Lock()
		if !takes || !q.repairable(epoch, durable) {
			q.mu.Unlock()
			q.m.log.Info("replica of an earlier master the repair was not made against: it starts over from a copy against what it holds",
				"replica_epoch", epoch, "replica_durable", durable)
			return q.startCopy(ctx, id, epoch, durable, peer)
		}
		q.resumes++
		q.mu.Unlock()
		q.m.log.Info("replica of an earlier master: it keeps its data and gets the repair of what changed since",
			"replica_epoch", epoch, "replica_durable", durable)
		return 1, startRepair, nil
	}
	q.mu.Unlock()
	return q.startCopy(ctx, id, epoch, durable, peer)
}

// repairable reports whether a replica at epoch with durable can take the
// repair of an earlier master's changes from the stream's start; q.mu is
// held.
func (q *queue) repairable(epoch, durable uint64) bool {
	base, ok := q.m.prior[epoch]
	return ok && epoch != q.m.epoch && durable >= base && q.changes == nil && q.holds(1)
}

// startCopy starts feed id's replica over from a full copy: against its
// manifest when it holds anything, else one the spool holds or a new one.
func (q *queue) startCopy(ctx context.Context, id int, epoch, durable uint64, peer stream.Peer) (uint64, startHow, error) {
	if q.ask != nil {
		// Capture makes the copy after the repair it may be waiting to
		// know this replica's part in.
		q.ask.pass(id)
	}
	m, err := manifestOf(ctx, peer, q.m.cfg.BlockSize)
	if err != nil {
		return 0, startRebuild, err
	}
	if len(m.Entries) == 0 {
		from, err := q.fullCopy(ctx, nil, epoch, durable)
		return from, startRebuild, err
	}
	from, err := q.fullCopy(ctx, m, epoch, durable)
	return from, startDiff, err
}

// fullCopy returns where a full copy against base begins (nil: as to an
// empty replica), one the spool holds or one it asks capture for. Capture
// keeps one base at a time, so requests take turns.
func (q *queue) fullCopy(ctx context.Context, base *resync.Manifest, epoch, durable uint64) (uint64, error) {
	select {
	case q.copying <- struct{}{}:
	case <-ctx.Done():
		return 0, ctx.Err()
	}
	defer func() { <-q.copying }()
	q.mu.Lock()
	defer q.mu.Unlock()
	if base == nil && q.rebuild != 0 && q.rebuiltOn == nil && q.changes == nil && q.holds(q.rebuild) {
		return q.rebuild, nil
	}
	if base == nil {
		q.m.log.Info("asking capture for a full copy of the tree for an empty replica",
			"replica_epoch", epoch, "replica_durable", durable, "epoch", q.m.epoch)
	} else {
		q.m.log.Info("asking capture for a full copy against what the replica holds: only what differs goes",
			"replica_epoch", epoch, "replica_durable", durable, "replica_entries", len(base.Entries), "epoch", q.m.epoch)
	}
	q.full(base)
	for {
		ch := q.rebuilt
		q.mu.Unlock()
		select {
		case <-ctx.Done():
			q.mu.Lock()
			return 0, ctx.Err()
		case <-ch:
		}
		q.mu.Lock()
		if q.rebuiltOn == base && q.changes == nil && q.holds(q.rebuild) {
			if base != nil {
				q.diffs++
			}
			return q.rebuild, nil
		}
	}
}

// changedBetween is what the stream's records after seq from changed, up
// to capture's seq to (the spool holds them: no replica has them durably).
func (q *queue) changedBetween(ctx context.Context, from, to uint64) (*resync.Changed, error) {
	q.mu.Lock()
	if q.changes != nil || q.shift > to {
		q.mu.Unlock()
		return nil, fmt.Errorf("master: changes were dropped while the spool was full: what changed since #%d is not known exactly", from)
	}
	to -= q.shift
	q.mu.Unlock()
	return q.changedInSpool(ctx, from, to)
}

// changedInSpool is what the spool's records after from, up to to, changed.
func (q *queue) changedInSpool(ctx context.Context, from, to uint64) (*resync.Changed, error) {
	ch := resync.NewChanged()
	if to <= from {
		return ch, nil
	}
	cur := q.spool.Cursor(from + 1)
	defer cur.Close()
	var (
		dec  = journal.Decoder{Alias: true} // records are done with before the next batch
		recs []journal.Record
	)
	for {
		b, _, last, err := cur.Next(ctx)
		if err != nil {
			return nil, fmt.Errorf("master: records after #%d: %w", from, err)
		}
		for off := 0; off < len(b); {
			var n int
			if recs, n, err = dec.DecodeChecked(b[off:], recs[:0]); err != nil {
				return nil, fmt.Errorf("master: records after #%d: %w", from, err)
			}
			off += n
			for i := range recs {
				if r := &recs[i]; r.Seq > from && r.Seq <= to {
					markChanged(ch, r)
				}
			}
		}
		if last >= to {
			return ch, nil
		}
	}
}

// markChanged notes what one record changes.
func markChanged(ch *resync.Changed, r *journal.Record) {
	switch r.Op {
	case journal.OpWrite:
		ch.Bytes(r.Path, r.Offset, int64(len(r.Data)))
	case journal.OpFallocate, journal.OpDirty:
		ch.Bytes(r.Path, r.Offset, r.Length)
	case journal.OpTruncate:
		ch.Bytes(r.Path, r.Length, math.MaxInt64-r.Length)
	case journal.OpCreate, journal.OpMkdir:
		// Also sent again for what exists (a walk reasserting the tree):
		// only whether it exists changed, with its mode.
		ch.Made(r.Path)
		ch.Attrs(r.Path)
	case journal.OpSetattr:
		ch.Attrs(r.Path)
	case journal.OpBarrier, journal.OpBookmark:
	default:
		ch.Entry(r.Path)
		if r.Path2 != "" && r.Op != journal.OpSymlink {
			ch.Entry(r.Path2)
		}
	}
}

// streamSeq is the stream's seq of capture's seq.
func (q *queue) streamSeq(seq uint64) uint64 {
	q.mu.Lock()
	defer q.mu.Unlock()
	return seq - min(seq, q.shift)
}

// manifestOf asks a replica for the manifest of what it holds.
func manifestOf(ctx context.Context, peer stream.Peer, blockSize int) (*resync.Manifest, error) {
	return manifestOfPaths(ctx, peer, blockSize, nil)
}

// manifestOfPaths asks a replica for the manifest of the paths it holds of
// paths (nil: all it holds).
func manifestOfPaths(ctx context.Context, peer stream.Peer, blockSize int, paths []string) (*resync.Manifest, error) {
	var d resync.ManifestDecoder
	err := peer.Manifest(ctx, &stream.ManifestRequest{BlockSize: blockSize, Paths: paths}, func(b []byte) error {
		_, err := d.Part(b)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("master: the replica's manifest: %w", err)
	}
	return d.Manifest()
}

// DirsAt is called by capture with where the directories are: the activity
// record keeps them, and starts over if every replica has everything.
func (q *queue) DirsAt(_ uint64, dirs map[uint64]string) {
	durable, caughtUp := q.m.durableAll()
	q.mu.Lock()
	// Changes the spool could not keep are only in the record until their
	// repair is sent.
	caughtUp = caughtUp && q.changes == nil
	q.mu.Unlock()
	if err := q.m.al.restart(q.m.epoch, durable, caughtUp, dirs); err != nil {
		q.m.log.Error("activity record", "err", err)
	}
}

// releasedUpTo lets the spool drop batches every replica made durable.
func (q *queue) releasedUpTo(seq uint64) error {
	q.mu.Lock()
	if q.held != nil {
		// The repair pending reads what changed after the manifest's point.
		seq = min(seq, q.held.at)
	}
	q.mu.Unlock()
	if err := q.spool.Release(seq); err != nil {
		return err
	}
	q.mu.Lock()
	close(q.released)
	q.released = make(chan struct{})
	q.mu.Unlock()
	return nil
}

// holds reports whether the spool can yield every batch from seq on.
func (q *queue) holds(seq uint64) bool {
	first, last := q.spool.First(), q.spool.Last()
	if first == 0 { // empty: only what comes next
		return seq == last+1
	}
	return seq >= first && seq <= last+1
}

// lag is how far a replica that applied up to applied is behind: the age
// of the oldest change it lacks, and the bytes of batches it lacks.
func (q *queue) lag(applied uint64) (time.Duration, int64) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for _, mk := range q.marks {
		if mk.last > applied {
			return time.Since(mk.at), int64(q.bytes - (mk.end - mk.size))
		}
	}
	return 0, 0
}

// forget drops the lag marks every replica has applied past.
func (q *queue) forget(applied uint64) {
	q.mu.Lock()
	defer q.mu.Unlock()
	i := 0
	for i < len(q.marks)-1 && q.marks[i].last <= applied {
		i++
	}
	q.marks = q.marks[i:]
}

type queueCounts struct{ dropped, overflows, repairs, evicted, resumes, diffs uint64 }

func (q *queue) counts() queueCounts {
	q.mu.Lock()
	defer q.mu.Unlock()
	return queueCounts{q.dropped, q.overflows, q.repairs, q.evicted, q.resumes, q.diffs}
}
