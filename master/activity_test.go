package master

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/writecap/writecap/journal"
)

// Three batches of real records, as capture makes them, with their last seqs.
var (
	actBatch1 = []journal.Record{
		{Seq: 1, Op: journal.OpMkdir, Path: "db", Mode: 0o755},
		{Seq: 2, Op: journal.OpCreate, Path: "db/t1", Mode: 0o644},
		{Seq: 3, Op: journal.OpWrite, Path: "db/t1", Offset: 0, Data: bytes.Repeat([]byte("row "), 1024)},
		{Seq: 4, Op: journal.OpBarrier, Path: "db/t1"},
	}
	actBatch2 = []journal.Record{
		{Seq: 5, Op: journal.OpWrite, Path: "db/t1", Offset: 8192, Data: bytes.Repeat([]byte("row "), 1024)},
		{Seq: 6, Op: journal.OpCreate, Path: "db/t1.tmp", Mode: 0o600},
		{Seq: 7, Op: journal.OpRename, Path: "db/t1.tmp", Path2: "db/t2"},
		{Seq: 8, Op: journal.OpSetattr, Path: "db/t2", Flags: journal.SetMode | journal.SetMtime, Mode: 0o640, Mtime: 1_700_000_000_000_000_000},
		{Seq: 9, Op: journal.OpBookmark, Path: "checkpoint"},
	}
	actBatch3 = []journal.Record{
		{Seq: 10, Op: journal.OpTruncate, Path: "db/t1", Length: 100},
		{Seq: 11, Op: journal.OpFallocate, Path: "db/t2", Offset: 0, Length: 1 << 20},
		{Seq: 12, Op: journal.OpUnlink, Path: "db/old"},
		{Seq: 13, Op: journal.OpLink, Path: "db/t2", Path2: "db/t2.link"},
		{Seq: 14, Op: journal.OpBarrier},
	}
)

func lastSeq(recs []journal.Record) uint64 { return recs[len(recs)-1].Seq }

// changesOf records every batch in a new Changes.
func changesOf(batches ...[]journal.Record) *journal.Changes {
	c := journal.NewChanges(0)
	for _, recs := range batches {
		for i := range recs {
			c.Add(&recs[i])
		}
	}
	return c
}

type pathChange struct {
	path string
	pc   journal.PathChange
}

func visit(c *journal.Changes) []pathChange {
	var out []pathChange
	c.Each(func(p string, pc journal.PathChange) { out = append(out, pathChange{p, pc}) })
	return out
}

func sameChanges(t *testing.T, got, want *journal.Changes) {
	t.Helper()
	if got == nil {
		t.Fatal("no changes")
	}
	if g, w := visit(got), visit(want); got.Full() != want.Full() || !reflect.DeepEqual(g, w) {
		t.Fatalf("changes:\n got %+v (full %v)\nwant %+v (full %v)", g, got.Full(), w, want.Full())
	}
}

// testLog returns a logger whose text output is in the buffer.
func testLog(t *testing.T) (*slog.Logger, *bytes.Buffer) {
	t.Helper()
	var buf bytes.Buffer
	return slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug})), &buf
}

func mustNewActivity(t *testing.T, dir string, epoch uint64, p *prior, log *slog.Logger) *activity {
	t.Helper()
	a, err := newActivity(dir, epoch, p, log)
	if err != nil {
		t.Fatalf("newActivity: %v", err)
	}
	t.Cleanup(func() { a.close() })
	return a
}

func mustAppend(t *testing.T, a *activity, epoch uint64, recs []journal.Record) {
	t.Helper()
	if err := a.append(epoch, lastSeq(recs), recs); err != nil {
		t.Fatalf("append: %v", err)
	}
}

func mustRead(t *testing.T, dir string, log *slog.Logger) *prior {
	t.Helper()
	p, err := readActivity(dir, log)
	if err != nil {
		t.Fatalf("readActivity: %v", err)
	}
	if p == nil {
		t.Fatal("readActivity found no record")
	}
	return p
}

func fileSize(t *testing.T, path string) int64 {
	t.Helper()
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return st.Size()
}

func TestReadActivityWithoutRecord(t *testing.T) {
	log, buf := testLog(t)
	p, err := readActivity(t.TempDir(), log)
	if p != nil || err != nil {
		t.Fatalf("readActivity of an empty directory: %+v, %v; want nil, nil", p, err)
	}
	if buf.Len() != 0 {
		t.Fatalf("logged %q", buf)
	}
}

func TestActivityFreshRecord(t *testing.T) {
	dir := t.TempDir()
	log, buf := testLog(t)
	before := time.Now()
	a := mustNewActivity(t, dir, 5, nil, log)
	for _, b := range [][]journal.Record{actBatch1, actBatch2, actBatch3} {
		mustAppend(t, a, 5, b)
	}
	if err := a.close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	after := time.Now()

	p := mustRead(t, dir, log)
	if want := map[uint64]uint64{5: 0}; !reflect.DeepEqual(p.resumable, want) {
		t.Fatalf("resumable %v, want %v", p.resumable, want)
	}
	sameChanges(t, p.changes, changesOf(actBatch1, actBatch2, actBatch3))
	if len(p.dirs) != 0 {
		t.Fatalf("dirs %v, want none", p.dirs)
	}
	if p.last.Before(before) || p.last.After(after) {
		t.Fatalf("last %v, not between %v and %v", p.last, before, after)
	}
	if buf.Len() != 0 {
		t.Fatalf("logged %q", buf)
	}
}

// A record with a header only still says which epochs it can resume.
func TestActivityHeaderOnly(t *testing.T) {
	dir := t.TempDir()
	log, _ := testLog(t)
	a := mustNewActivity(t, dir, 2, nil, log)
	if err := a.close(); err != nil {
		t.Fatal(err)
	}
	p := mustRead(t, dir, log)
	if want := map[uint64]uint64{2: 0}; !reflect.DeepEqual(p.resumable, want) {
		t.Fatalf("resumable %v, want %v", p.resumable, want)
	}
	if p.changes == nil || p.changes.Len() != 0 || p.changes.Full() || p.last.IsZero() {
		t.Fatalf("changes %+v, last %v: want none, and the header's time", p.changes, p.last)
	}
}

func TestActivityCarriedOver(t *testing.T) {
	dir := t.TempDir()
	log, _ := testLog(t)
	dirs := map[uint64]string{3: "dirs-of-epoch-3"}

	first := mustNewActivity(t, dir, 3, nil, log)
	mustAppend(t, first, 3, actBatch1)
	if err := first.restart(3, lastSeq(actBatch1), true, dirs); err != nil {
		t.Fatalf("restart: %v", err)
	}
	mustAppend(t, first, 3, actBatch2)
	if err := first.close(); err != nil {
		t.Fatal(err)
	}
	p1 := mustRead(t, dir, log)
	if want := map[uint64]uint64{3: lastSeq(actBatch1)}; !reflect.DeepEqual(p1.resumable, want) {
		t.Fatalf("first record: resumable %v, want %v", p1.resumable, want)
	}
	sameChanges(t, p1.changes, changesOf(actBatch2))

	// The next master, of epoch 4, starts its seqs over.
	second := mustNewActivity(t, dir, 4, p1, log)
	b3 := slices.Clone(actBatch3)
	for i := range b3 {
		b3[i].Seq = uint64(i + 1)
	}
	// Until its first append, the record already holds what it carried over.
	p := mustRead(t, dir, log)
	sameChanges(t, p.changes, changesOf(actBatch2))
	mustAppend(t, second, 4, b3)
	if err := second.close(); err != nil {
		t.Fatal(err)
	}

	p2 := mustRead(t, dir, log)
	if want := map[uint64]uint64{3: lastSeq(actBatch1), 4: 0}; !reflect.DeepEqual(p2.resumable, want) {
		t.Fatalf("resumable %v, want %v", p2.resumable, want)
	}
	if !reflect.DeepEqual(p2.dirs, dirs) {
		t.Fatalf("dirs %v, want %v", p2.dirs, dirs)
	}
	sameChanges(t, p2.changes, changesOf(actBatch2, b3))
}

func TestActivityRestart(t *testing.T) {
	last := lastSeq(actBatch2)
	tests := []struct {
		name          string
		durable       uint64
		caughtUp      bool
		wantResumable map[uint64]uint64
		wantKept      bool // the changes before the restart are still on record
	}{
		{name: "caught up at the last seq", durable: last, caughtUp: true, wantResumable: map[uint64]uint64{7: last}},
		{name: "caught up past the last seq", durable: last + 5, caughtUp: true, wantResumable: map[uint64]uint64{7: last + 5}},
		{name: "caught up short of the last seq", durable: last - 1, caughtUp: true, wantResumable: map[uint64]uint64{2: 40, 7: 0}, wantKept: true},
		{name: "not caught up", durable: last, caughtUp: false, wantResumable: map[uint64]uint64{2: 40, 7: 0}, wantKept: true},
		{name: "nothing durable", durable: 0, caughtUp: false, wantResumable: map[uint64]uint64{2: 40, 7: 0}, wantKept: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			log, _ := testLog(t)
			earlier := &prior{
				resumable: map[uint64]uint64{2: 40},
				changes:   changesOf([]journal.Record{{Op: journal.OpWrite, Path: "from-epoch-2", Data: []byte("x")}}),
				dirs:      map[uint64]string{2: "dirs-2"},
			}
			a := mustNewActivity(t, dir, 7, earlier, log)
			mustAppend(t, a, 7, actBatch1)
			mustAppend(t, a, 7, actBatch2)
			dirs := map[uint64]string{7: "dirs-7"}
			if err := a.restart(7, tt.durable, tt.caughtUp, dirs); err != nil {
				t.Fatalf("restart: %v", err)
			}
			want := journal.NewChanges(0)
			if tt.wantKept {
				want = changesOf(actBatch1, actBatch2)
				want.Merge(earlier.changes)
			}
			p := mustRead(t, dir, log)
			if !reflect.DeepEqual(p.resumable, tt.wantResumable) {
				t.Fatalf("resumable %v, want %v", p.resumable, tt.wantResumable)
			}
			if !reflect.DeepEqual(p.dirs, dirs) {
				t.Fatalf("dirs %v, want %v", p.dirs, dirs)
			}
			sameChanges(t, p.changes, want)

			// What comes after the restart is recorded on top of it.
			mustAppend(t, a, 7, actBatch3)
			if err := a.close(); err != nil {
				t.Fatal(err)
			}
			want.Merge(changesOf(actBatch3))
			p = mustRead(t, dir, log)
			if !reflect.DeepEqual(p.resumable, tt.wantResumable) {
				t.Fatalf("after an append: resumable %v, want %v", p.resumable, tt.wantResumable)
			}
			sameChanges(t, p.changes, want)
		})
	}
}

// Capture names the protected root "": a resend prunes it first, and a
// chmod of the root is a setattr of "". A master whose record holds such a
// batch must start again from that record, not fail on it.
func TestActivityRecordsTheRoot(t *testing.T) {
	tests := []struct {
		name string
		rec  journal.Record
	}{
		{name: "prune of the root", rec: journal.Record{Seq: 15, Op: journal.OpPrune, Path: "", Data: []byte("db\x00")}},
		{name: "setattr of the root", rec: journal.Record{Seq: 15, Op: journal.OpSetattr, Path: "", Flags: journal.SetMode, Mode: 0o700}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			log, _ := testLog(t)
			a := mustNewActivity(t, dir, 1, nil, log)
			mustAppend(t, a, 1, actBatch1)
			batch := []journal.Record{tt.rec}
			mustAppend(t, a, 1, batch)
			if err := a.close(); err != nil {
				t.Fatal(err)
			}
			sameChanges(t, mustRead(t, dir, log).changes, changesOf(actBatch1, batch))
		})
	}
}

// actFrame is a frame of an activity file: where it starts, how long it is.
type actFrame struct {
	off, n int64
	kind   byte
}

// frames reads the frames of the activity file in dir, failing on a bad one.
func frames(t *testing.T, dir string) []actFrame {
	t.Helper()
	f, err := os.Open(filepath.Join(dir, activityFile))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r := bufio.NewReader(f)
	var out []actFrame
	var off int64
	for {
		kind, _, n, err := readFrame(r)
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatalf("frame at offset %d: %v", off, err)
		}
		out = append(out, actFrame{off, n, kind})
		off += n
	}
}

func TestReadActivityTornTail(t *testing.T) {
	tests := []struct {
		name string
		// damage changes the file; frame is the one it damages (0: header).
		damage func(b []byte, fr actFrame) []byte
		frame  int
	}{
		{name: "cut in the last frame's body", frame: 3, damage: func(b []byte, fr actFrame) []byte { return b[:fr.off+fr.n/2] }},
		{name: "cut one byte short", frame: 3, damage: func(b []byte, fr actFrame) []byte { return b[:fr.off+fr.n-1] }},
		{name: "cut in the last frame's length", frame: 3, damage: func(b []byte, fr actFrame) []byte { return b[:fr.off+2] }},
		{name: "cut in the last frame's crc", frame: 3, damage: func(b []byte, fr actFrame) []byte { return b[:fr.off+6] }},
		{name: "flipped byte in the last frame's body", frame: 3, damage: func(b []byte, fr actFrame) []byte { b[fr.off+fr.n-3] ^= 0x20; return b }},
		{name: "flipped byte in the last frame's kind", frame: 3, damage: func(b []byte, fr actFrame) []byte { b[fr.off+crcFrameHeader] ^= 0x01; return b }},
		{name: "flipped byte in the last frame's crc", frame: 3, damage: func(b []byte, fr actFrame) []byte { b[fr.off+5] ^= 0x80; return b }},
		{name: "last frame's length past the end", frame: 3, damage: func(b []byte, fr actFrame) []byte {
			binary.LittleEndian.PutUint32(b[fr.off:], uint32(fr.n)+100)
			return b
		}},
		{name: "last frame's length zero", frame: 3, damage: func(b []byte, fr actFrame) []byte { clear(b[fr.off : fr.off+4]); return b }},
		{name: "zeros where the last frame was", frame: 3, damage: func(b []byte, fr actFrame) []byte { clear(b[fr.off:]); return b }},
		{name: "flipped byte in a middle frame", frame: 2, damage: func(b []byte, fr actFrame) []byte { b[fr.off+fr.n/2] ^= 0xff; return b }},
		{name: "flipped byte in the header", frame: 0, damage: func(b []byte, fr actFrame) []byte { b[fr.off+fr.n/2] ^= 0xff; return b }},
	}
	batches := [][]journal.Record{actBatch1, actBatch2, actBatch3}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, activityFile)
			log, buf := testLog(t)
			a := mustNewActivity(t, dir, 9, nil, log)
			for _, b := range batches {
				mustAppend(t, a, 9, b)
			}
			if err := a.close(); err != nil {
				t.Fatal(err)
			}
			frs := frames(t, dir)
			if len(frs) != 1+len(batches) {
				t.Fatalf("%d frames, want a header and %d entries", len(frs), len(batches))
			}
			b, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			fr := frs[tt.frame]
			if err := os.WriteFile(path, tt.damage(b, fr), 0o600); err != nil {
				t.Fatal(err)
			}

			p, err := readActivity(dir, log)
			if err != nil {
				t.Fatalf("readActivity: %v", err)
			}
			if tt.frame == 0 {
				if p != nil {
					t.Fatalf("a record without its header: %+v", p)
				}
			} else {
				if p == nil {
					t.Fatal("no record")
				}
				if want := map[uint64]uint64{9: 0}; !reflect.DeepEqual(p.resumable, want) {
					t.Fatalf("resumable %v, want %v", p.resumable, want)
				}
				sameChanges(t, p.changes, changesOf(batches[:tt.frame-1]...))
			}
			out := buf.String()
			if !strings.Contains(out, "level=WARN") || strings.Count(out, "\n") != 1 {
				t.Fatalf("want one warning, logged %q", out)
			}
			if !strings.Contains(out, "file="+path+" ") {
				t.Fatalf("the warning does not name the file %s: %q", path, out)
			}
			if !strings.Contains(out, "offset="+strconv.FormatInt(fr.off, 10)+" ") {
				t.Fatalf("the warning does not name offset %d: %q", fr.off, out)
			}
		})
	}
}

// A frame whose CRC is right but whose content is not a record is not a torn
// write: readActivity fails, naming the file and where.
func TestReadActivityCorruptFrame(t *testing.T) {
	goodChanges, err := changesOf(actBatch1).Encode()
	if err != nil {
		t.Fatal(err)
	}
	frame := func(t *testing.T, w *bytes.Buffer, kind byte, v any) {
		t.Helper()
		if _, err := writeFrame(w, kind, v); err != nil {
			t.Fatal(err)
		}
	}
	header := func(t *testing.T, w *bytes.Buffer) {
		t.Helper()
		frame(t, w, kindHeader, &activityHeader{Resumable: map[uint64]uint64{1: 0}})
	}
	tests := []struct {
		name    string
		file    func(t *testing.T, w *bytes.Buffer)
		wantErr error
		want    string
	}{
		{
			name: "an entry before the header",
			file: func(t *testing.T, w *bytes.Buffer) {
				frame(t, w, kindEntry, &activityEntry{Changes: goodChanges})
			},
			wantErr: errActivity, want: "offset 0",
		},
		{
			name: "two headers",
			file: func(t *testing.T, w *bytes.Buffer) {
				header(t, w)
				header(t, w)
			},
			wantErr: errActivity, want: "kind 1",
		},
		{
			name: "an unknown kind",
			file: func(t *testing.T, w *bytes.Buffer) {
				header(t, w)
				frame(t, w, 9, &activityEntry{Changes: goodChanges})
			},
			wantErr: errActivity, want: "kind 9",
		},
		{
			name: "a header that is not msgpack",
			file: func(t *testing.T, w *bytes.Buffer) {
				frame(t, w, kindHeader, "just a string")
			},
			wantErr: errActivity, want: "header",
		},
		{
			name: "an entry that is not msgpack",
			file: func(t *testing.T, w *bytes.Buffer) {
				header(t, w)
				frame(t, w, kindEntry, []int{1, 2, 3})
			},
			wantErr: errActivity, want: "entry at offset",
		},
		{
			name: "an entry whose changes are corrupt",
			file: func(t *testing.T, w *bytes.Buffer) {
				header(t, w)
				frame(t, w, kindEntry, &activityEntry{Changes: []byte("garbage")})
			},
			wantErr: journal.ErrCorrupt, want: "entry at offset",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			var w bytes.Buffer
			tt.file(t, &w)
			path := filepath.Join(dir, activityFile)
			if err := os.WriteFile(path, w.Bytes(), 0o600); err != nil {
				t.Fatal(err)
			}
			log, _ := testLog(t)
			p, err := readActivity(dir, log)
			if err == nil || p != nil {
				t.Fatalf("readActivity: %+v, %v; want an error", p, err)
			}
			if !errors.Is(err, tt.wantErr) || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %q: want it to wrap %q and name %s and %q", err, tt.wantErr, path, tt.want)
			}
		})
	}
}

// bigBatch writes to n paths of about 2 KiB each, numbered from first.
func bigBatch(seq uint64, first, n int) []journal.Record {
	long := strings.Repeat("x", 2000)
	recs := make([]journal.Record, n)
	for i := range recs {
		recs[i] = journal.Record{Seq: seq + uint64(i), Op: journal.OpWrite, Path: fmt.Sprintf("big/%s/%d", long, first+i), Offset: int64(seq) * 10, Data: []byte("x")}
	}
	return recs
}

func TestActivityCompaction(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, activityFile)
	log, _ := testLog(t)
	a := mustNewActivity(t, dir, 1, nil, log)
	all := journal.NewChanges(0)
	seq := uint64(1)
	add := func(recs []journal.Record) {
		t.Helper()
		mustAppend(t, a, 1, recs)
		all.Merge(changesOf(recs))
		seq += uint64(len(recs))
	}
	// The same 16 paths again and again: the record stays small while the
	// file grows by an entry per batch.
	stBefore, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	var compacted bool
	for i := 0; i < 2*maxActivity/(16*2000); i++ {
		add(bigBatch(seq, 0, 16))
		st, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if !os.SameFile(st, stBefore) {
			compacted = true
			if stBefore.Size() > maxActivity {
				t.Fatalf("the file grew to %d bytes before it was compacted, past %d", stBefore.Size(), maxActivity)
			}
			break
		}
		stBefore = st
	}
	if !compacted {
		t.Fatalf("no compaction with the file at %d bytes", fileSize(t, path))
	}
	frs := frames(t, dir)
	if len(frs) != 2 || frs[0].kind != kindHeader || frs[1].kind != kindEntry {
		t.Fatalf("compacted to %+v, want a header and one entry", frs)
	}
	if size := fileSize(t, path); size >= stBefore.Size() || size != frs[1].off+frs[1].n {
		t.Fatalf("compacted to %d bytes, from %d", size, stBefore.Size())
	}
	p := mustRead(t, dir, log)
	sameChanges(t, p.changes, all)
	if want := map[uint64]uint64{1: 0}; !reflect.DeepEqual(p.resumable, want) {
		t.Fatalf("resumable %v, want %v", p.resumable, want)
	}
	if _, err := os.Stat(path + ".tmp"); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the temporary file is left: %v", err)
	}

	// Appends go on after the compacted record.
	add(actBatch3)
	if err := a.close(); err != nil {
		t.Fatal(err)
	}
	if frs := frames(t, dir); len(frs) != 3 {
		t.Fatalf("%d frames after one more append, want 3", len(frs))
	}
	sameChanges(t, mustRead(t, dir, log).changes, all)
}

// A record that stays larger than maxActivity once compacted (many paths
// changed while a replica is away) must not be rewritten, and synced, on
// every append after: that is a copy of the whole record per batch, in the
// goroutine that reads the capture ring.
func TestActivityCompactionOfALargeRecordIsNotRepeated(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, activityFile)
	log, _ := testLog(t)
	a := mustNewActivity(t, dir, 1, nil, log)
	seq, n := uint64(1), 0
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	// 100 new paths of 2 KiB a batch until the file is compacted to more
	// than maxActivity.
	for i := 0; ; i++ {
		if i > 4*maxActivity/(100*2000) {
			t.Fatalf("no compaction to more than %d bytes", maxActivity)
		}
		mustAppend(t, a, 1, bigBatch(seq, n, 100))
		seq, n = seq+100, n+100
		now, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		rewritten := !os.SameFile(now, st)
		st = now
		if rewritten && now.Size() > maxActivity {
			break
		}
	}
	for i := range 3 {
		small := []journal.Record{{Seq: seq, Op: journal.OpWrite, Path: "small", Offset: int64(i), Data: []byte("y")}}
		mustAppend(t, a, 1, small)
		seq++
		now, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if !os.SameFile(now, st) {
			t.Fatalf("append %d of one small record after compaction rewrote the whole %d-byte record", i+1, now.Size())
		}
	}
}

// A torn frame whose length field was garbled must not make readActivity
// allocate what it claims: a few bytes on disk would cost up to maxFrame
// (256 MiB) of memory at every start.
func TestReadActivityAllocatesOnlyForWhatIsThere(t *testing.T) {
	tests := []struct {
		name  string
		claim uint32
	}{
		{name: "the largest frame", claim: maxFrame},
		{name: "a large frame", claim: 64 << 20},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			log, buf := testLog(t)
			a := mustNewActivity(t, dir, 1, nil, log)
			mustAppend(t, a, 1, actBatch1)
			if err := a.close(); err != nil {
				t.Fatal(err)
			}
			f, err := os.OpenFile(filepath.Join(dir, activityFile), os.O_WRONLY|os.O_APPEND, 0)
			if err != nil {
				t.Fatal(err)
			}
			var torn [crcFrameHeader + 16]byte
			binary.LittleEndian.PutUint32(torn[:], tt.claim)
			if _, err := f.Write(torn[:]); err != nil {
				t.Fatal(err)
			}
			if err := f.Close(); err != nil {
				t.Fatal(err)
			}
			var p *prior
			n := allocated(func() { p, err = readActivity(dir, log) })
			if err != nil || p == nil {
				t.Fatalf("readActivity: %v, %v", p, err)
			}
			sameChanges(t, p.changes, changesOf(actBatch1))
			if !strings.Contains(buf.String(), "level=WARN") {
				t.Fatalf("no warning about the torn frame: %q", buf)
			}
			if n > 16<<20 {
				t.Fatalf("reading a %d-byte record allocated %d bytes", fileSize(t, filepath.Join(dir, activityFile)), n)
			}
		})
	}
}

// allocated reports how many bytes f allocates.
func allocated(f func()) uint64 {
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

// actReseal recomputes the CRC of every frame whose length fits in b, so
// that fuzzing reaches the decoding behind the CRC.
func actReseal(b []byte) []byte {
	for off := 0; off+crcFrameHeader <= len(b); {
		n := int(binary.LittleEndian.Uint32(b[off:]))
		if n == 0 || n > len(b)-off-crcFrameHeader {
			break
		}
		body := b[off+crcFrameHeader : off+crcFrameHeader+n]
		binary.LittleEndian.PutUint32(b[off+4:], crc32.Checksum(body, castagnoli))
		off += crcFrameHeader + n
	}
	return b
}

func FuzzReadActivity(f *testing.F) {
	// Seeds: real records, whole and cut, made in a directory of their own.
	seedDir := f.TempDir()
	discard := slog.New(slog.DiscardHandler)
	a, err := newActivity(seedDir, 3, &prior{resumable: map[uint64]uint64{1: 7}, dirs: map[uint64]string{1: "d"}, changes: changesOf(actBatch3)}, discard)
	if err != nil {
		f.Fatal(err)
	}
	if err := a.append(3, 4, actBatch1[:2]); err != nil {
		f.Fatal(err)
	}
	if err := a.append(3, 8, actBatch2[3:]); err != nil {
		f.Fatal(err)
	}
	if err := a.close(); err != nil {
		f.Fatal(err)
	}
	whole, err := os.ReadFile(filepath.Join(seedDir, activityFile))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(whole)
	f.Add(whole[:len(whole)-1])
	f.Add(whole[:crcFrameHeader+3])
	var hdr bytes.Buffer
	if _, err := writeFrame(&hdr, kindHeader, &activityHeader{Resumable: map[uint64]uint64{1: 0}}); err != nil {
		f.Fatal(err)
	}
	f.Add(hdr.Bytes())
	f.Add([]byte{})

	// One directory for all inputs: a new one each time would make file
	// system calls most of the fuzzer's time.
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, b []byte) {
		checkReadActivity(t, dir, b)
		checkReadActivity(t, dir, actReseal(slices.Clone(b)))
	})
}

// checkReadActivity reads b as an activity file and checks that it gives no
// record, a record whose changes a new master can write again, or an error
// that says the record is corrupt.
func checkReadActivity(t *testing.T, dir string, b []byte) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, activityFile), b, 0o600); err != nil {
		t.Fatal(err)
	}
	p, err := readActivity(dir, slog.New(slog.DiscardHandler))
	switch {
	case err != nil:
		if p != nil || !(errors.Is(err, errActivity) || errors.Is(err, journal.ErrCorrupt)) {
			t.Fatalf("error %q with a record (%v), or not saying the record is corrupt", err, p != nil)
		}
	case p == nil:
	case p.changes == nil:
		t.Fatal("a record without changes")
	default:
		// newActivity carries the changes over by encoding them again: they
		// must decode.
		enc, err := p.changes.Encode()
		if err != nil {
			t.Fatalf("encoding the changes read: %v", err)
		}
		back, err := journal.DecodeChanges(enc, activityLimit)
		if err != nil {
			t.Fatalf("the changes read do not decode once encoded again: %v", err)
		}
		sameChanges(t, back, p.changes)
	}
}
