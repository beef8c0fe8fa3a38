package master

import (
	"context"
	"sync"
	"time"

	"github.com/writecap/writecap/journal"
)

// queue is the master's spool seen from both ends: the capture sink appends
// batches, the replicas' feeds read them and release what every replica has
// made durable. It also knows where full copies of the tree begin, so a
// replica that cannot resume starts over from one.
type queue struct {
	m     *Master
	spool *journal.Spool
	enc   *journal.Encoder

	mu        sync.Mutex
	rebuild   uint64        // first seq of the latest full copy the spool holds whole; 0: none
	rebuilt   chan struct{} // closed and replaced when rebuild moves
	released  chan struct{} // closed and replaced when the spool releases
	overflow  bool          // batches are dropped until a replica needs a full copy
	dropped   uint64        // records dropped while overflowing
	overflows uint64        // times the spool filled up
	marks     []mark        // capture times of recent batches, for lag
	bytes     uint64        // batch bytes appended, all time
}

// mark is when a batch was captured and how many bytes came before it.
type mark struct {
	last uint64
	at   time.Time
	end  uint64 // queue bytes up to and including this batch
	size uint64
}

// maxMarks bounds the lag bookkeeping; older marks go first.
const maxMarks = 1 << 16

var _ interface {
	Write([]journal.Record) error
	RebuildAt(uint64)
} = (*queue)(nil)

// Write is the capture sink: one batch per call.
func (q *queue) Write(recs []journal.Record) error {
	b, err := q.enc.AppendBatch(nil, recs)
	if err != nil {
		return err
	}
	last := recs[len(recs)-1].Seq
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.overflow {
		q.dropped += uint64(len(recs))
		return nil
	}
	for {
		err := q.spool.Append(b)
		if err == nil {
			break
		}
		if !journal.IsSpoolFull(err) {
			return err
		}
		if !q.m.anyConnected() {
			return q.startOverflow(last, len(recs), err)
		}
		// A replica is taking batches: wait for it to make room rather
		// than make it start over. Capture backs up into the kernel ring,
		// whose losses are repaired from the files.
		ch := q.released
		q.mu.Unlock()
		select {
		case <-ch:
		case <-time.After(time.Second):
		}
		q.mu.Lock()
		if q.overflow {
			q.dropped += uint64(len(recs))
			return nil
		}
	}
	q.bytes += uint64(len(b))
	q.marks = append(q.marks, mark{last: last, at: time.Now(), end: q.bytes, size: uint64(len(b))})
	if len(q.marks) > maxMarks {
		q.marks = q.marks[len(q.marks)-maxMarks/2:]
	}
	return nil
}

// releasedUpTo lets the spool drop batches every replica made durable.
func (q *queue) releasedUpTo(seq uint64) error {
	if err := q.spool.Release(seq); err != nil {
		return err
	}
	q.mu.Lock()
	close(q.released)
	q.released = make(chan struct{})
	q.mu.Unlock()
	return nil
}

// startOverflow drops what the spool holds: it never grows past its limits
// and capture never stops. Replicas that had not made it durable are rebuilt
// from a full copy when they next connect.
func (q *queue) startOverflow(last uint64, n int, cause error) error {
	q.overflows++
	q.overflow = true
	q.dropped += uint64(n)
	q.m.log.Warn("spool limit reached: dropping spooled changes; replicas behind are rebuilt from a full copy when they connect",
		"cause", cause, "spool_bytes", q.spool.Bytes(), "last_seq", last)
	if err := q.spool.Reset(last); err != nil {
		return err
	}
	q.setRebuild(0)
	return nil
}

// RebuildAt is called by capture before a full copy's first record.
func (q *queue) RebuildAt(seq uint64) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.overflow || q.spool.Last() != seq-1 {
		// The copy replaces whatever was dropped: start the spool there.
		if err := q.spool.Reset(seq - 1); err != nil {
			q.m.log.Error("spool reset failed", "err", err)
			return
		}
		q.overflow = false
	}
	q.setRebuild(seq)
}

func (q *queue) setRebuild(seq uint64) {
	q.rebuild = seq
	close(q.rebuilt)
	q.rebuilt = make(chan struct{})
}

// start decides where a replica in state (epoch, durable) resumes: right
// after durable if the spool holds everything since, else at a full copy,
// which it asks capture for when the spool holds none.
func (q *queue) start(ctx context.Context, epoch, durable uint64) (from uint64, reset bool, err error) {
	q.mu.Lock()
	if epoch == q.m.epoch && !q.overflow && q.holds(durable+1) {
		q.mu.Unlock()
		return durable + 1, false, nil
	}
	asked := false
	for {
		if q.rebuild != 0 && !q.overflow && q.holds(q.rebuild) {
			from := q.rebuild
			q.mu.Unlock()
			return from, true, nil
		}
		if !asked {
			q.m.log.Info("asking capture for a full copy of the tree for a replica that cannot resume",
				"replica_epoch", epoch, "replica_durable", durable, "epoch", q.m.epoch)
			q.m.source.Resync()
			asked = true
		}
		ch := q.rebuilt
		q.mu.Unlock()
		select {
		case <-ctx.Done():
			return 0, false, ctx.Err()
		case <-ch:
		}
		q.mu.Lock()
	}
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

func (q *queue) counts() (dropped, overflows uint64) {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.dropped, q.overflows
}
