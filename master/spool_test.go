package master

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/writecap/writecap/journal"
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
		rebuilt: make(chan struct{}), released: make(chan struct{})}
	return m.q
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
		overflow bool
		durable  uint64
		wantFrom uint64
		wantHow  startHow
	}{
		{name: "resume from the spool", durable: 3, wantFrom: 4, wantHow: startResume},
		{name: "caught up, full copy after dropped changes", overflow: true, durable: 3, wantFrom: 5, wantHow: startRebuild},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			q := testQueue(t)
			if err := q.Write(writes(1, 3)); err != nil {
				t.Fatal(err)
			}
			if tt.overflow {
				q.changes = journal.NewChanges(0)
				if err := q.Write(writes(4, 5)); err != nil {
					t.Fatal(err)
				}
				q.RebuildAt(6)
				if err := q.Write(writes(6, 7)); err != nil {
					t.Fatal(err)
				}
			}
			from, how, err := q.start(context.Background(), q.m.epoch, tt.durable)
			if err != nil {
				t.Fatal(err)
			}
			if from != tt.wantFrom || how != tt.wantHow {
				t.Errorf("start(durable %d) = from %d, how %d; want from %d, how %d", tt.durable, from, how, tt.wantFrom, tt.wantHow)
			}
		})
	}
}
