package master

import (
	"context"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/writecap/writecap/journal"
	"github.com/writecap/writecap/resync"
	"github.com/writecap/writecap/stream"
)

// testQueue is a master's queue without capture or replicas: what the sink
// side does with sequence numbers, and where a replica's session starts.
func testQueue(t *testing.T) *queue {
	t.Helper()
	log, _ := testLog(t)
	dir := t.TempDir()
	m := &Master{log: log, epoch: 5}
	sp, err := journal.OpenSpool(journal.SpoolOptions{Dir: filepath.Join(dir, "spool"), MemLimit: 1 << 20, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sp.Close() })
	m.al = mustNewActivity(t, dir, m.epoch, nil, log)
	m.q = &queue{m: m, spool: sp, enc: journal.NewEncoder(journal.EncoderOptions{}),
		rebuilt: make(chan struct{}), released: make(chan struct{}), copying: make(chan struct{}, 1), full: func(*resync.Manifest) {}}
	m.cfg.BlockSize = resync.DefaultBlockSize
	return m.q
}

// holder is a replica that holds m.
type holder struct{ m *resync.Manifest }

func (h holder) Manifest(ctx context.Context, req *stream.ManifestRequest, part func([]byte) error) error {
	return h.m.EncodeParts(func(b []byte, _ bool) error { return part(b) })
}

func writes(first, last uint64) []journal.Record {
	var recs []journal.Record
	for seq := first; seq <= last; seq++ {
		recs = append(recs, journal.Record{Seq: seq, Op: journal.OpWrite, Path: "f", Data: []byte("x")})
	}
	return recs
}

// TestQueueStart: a replica of this epoch resumes right after what it has
// made durable while the spool holds it; after changes were dropped and a
// full copy began, a replica that had everything before the drop must not
// resume across the copy (it would miss the removals the dropped records
// made), so it starts over from the copy.
func TestQueueStart(t *testing.T) {
	tests := []struct {
		name     string
		epoch    uint64 // the replica's, when not the master's
		overflow bool
		durable  uint64
		holds    *resync.Manifest // the replica's manifest
		prior    bool             // epoch 4 is an earlier master's this one repairs
		others   bool             // its repair was made against another replica's manifest alone
		wantFrom uint64
		wantHow  startHow
	}{
		{name: "resume from the spool", durable: 3, wantFrom: 4, wantHow: startResume},
		{name: "caught up, full copy after dropped changes", overflow: true, durable: 3, wantFrom: 5, wantHow: startRebuild},
		{name: "another epoch, holding nothing: the full copy held", epoch: 4, durable: 3, wantFrom: 6, wantHow: startRebuild},
		{name: "another epoch, holding files: a copy against them", epoch: 4, durable: 3, wantFrom: 8, wantHow: startDiff,
			holds: &resync.Manifest{BlockSize: resync.DefaultBlockSize, Entries: []resync.Entry{{Path: "f", Kind: resync.KindFile, Size: 1, Nlink: 1}},
				Hashes: [][]resync.Hash{{{1}}}}},
		{name: "an earlier master's replica: the repair from the start", epoch: 4, durable: 3, prior: true, wantFrom: 1, wantHow: startRepair},
		{name: "an earlier master's replica the repair was not made against: a copy against what it holds", epoch: 4, durable: 3,
			prior: true, others: true, wantFrom: 8, wantHow: startDiff,
			holds: &resync.Manifest{BlockSize: resync.DefaultBlockSize, Entries: []resync.Entry{{Path: "f", Kind: resync.KindFile, Size: 1, Nlink: 1}},
				Hashes: [][]resync.Hash{{{1}}}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			q := testQueue(t)
			if err := q.Write(writes(1, 3)); err != nil {
				t.Fatal(err)
			}
			if tt.overflow {
				q.changes = journal.NewChanges(0)
			}
			if err := q.Write(writes(4, 5)); err != nil {
				t.Fatal(err)
			}
			q.RebuildAt(6, nil)
			if err := q.Write(writes(6, 7)); err != nil {
				t.Fatal(err)
			}
			var asked *resync.Manifest
			q.full = func(base *resync.Manifest) {
				// As capture does: the copy begins after what it has.
				asked = base
				go q.RebuildAt(q.spool.Last()+1, base)
			}
			if tt.prior {
				q.m.prior = map[uint64]uint64{4: 3}
				q.ask = newHeldAsk(2)
				close(q.ask.posted)
				if tt.others {
					q.ask.used = map[int]bool{1: true}
				}
				close(q.ask.decided)
			}
			epoch := q.m.epoch
			if tt.epoch != 0 {
				epoch = tt.epoch
			}
			holds := tt.holds
			if holds == nil {
				holds = &resync.Manifest{BlockSize: resync.DefaultBlockSize}
			}
			from, how, err := q.start(context.Background(), 0, epoch, tt.durable, tt.durable, holder{holds})
			if err != nil {
				t.Fatal(err)
			}
			if from != tt.wantFrom || how != tt.wantHow {
				t.Errorf("start(durable %d) = from %d, how %d; want from %d, how %d", tt.durable, from, how, tt.wantFrom, tt.wantHow)
			}
			if tt.wantHow == startDiff && (asked == nil || len(asked.Entries) != 1) {
				t.Errorf("capture was asked for a copy against %v, want the replica's manifest", asked)
			}
		})
	}
}

// TestQueueFullCopiesTakeTurns: capture keeps one base at a time, so when
// an empty replica and one holding files both need a full copy, each must
// get one made for it, not wait for ever on the other's.
func TestQueueFullCopiesTakeTurns(t *testing.T) {
	q := testQueue(t)
	if err := q.Write(writes(1, 3)); err != nil {
		t.Fatal(err)
	}
	var (
		mu   sync.Mutex
		slot *resync.Manifest
	)
	asked := make(chan struct{}, 8)
	q.full = func(base *resync.Manifest) {
		mu.Lock()
		slot = base
		mu.Unlock()
		asked <- struct{}{}
	}
	// Capture: at its tick, one full copy against the last base asked.
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		for {
			select {
			case <-stop:
				return
			case <-asked:
			}
			for len(asked) > 0 {
				<-asked
			}
			mu.Lock()
			b := slot
			mu.Unlock()
			q.RebuildAt(q.spool.Last()+1, b)
		}
	}()
	holds := &resync.Manifest{BlockSize: resync.DefaultBlockSize, Entries: []resync.Entry{{Path: "f", Kind: resync.KindFile, Size: 1, Nlink: 1}},
		Hashes: [][]resync.Hash{{{1}}}}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	type result struct {
		how startHow
		err error
	}
	results := make(chan result, 2)
	for _, m := range []*resync.Manifest{{BlockSize: resync.DefaultBlockSize}, holds} {
		go func() {
			_, how, err := q.start(ctx, 0, 4, 3, 3, holder{m})
			results <- result{how, err}
		}()
	}
	got := map[startHow]bool{}
	for range 2 {
		r := <-results
		if r.err != nil {
			t.Fatalf("a replica never got its full copy: %v", r.err)
		}
		got[r.how] = true
	}
	if !got[startRebuild] || !got[startDiff] {
		t.Errorf("starts %v, want one copy as to an empty replica and one against the manifest", got)
	}
}
