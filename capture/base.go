package capture

import (
	"errors"
	"io"
	"os"

	"golang.org/x/sys/unix"

	"github.com/writecap/writecap/journal"
	"github.com/writecap/writecap/resync"
)

// baseFile is a replica's copy of a file as the stream found it: the
// initial copy sends only the blocks of the master's file that differ.
// Between the walk that pairs the two and the read that compares them,
// every change to the master's file reaches the replica's as a record too,
// so each byte is either one both sides got from the same record, or one
// the master's read finds as the base had it (equal hash) or sends.
type baseFile struct {
	hashes []resync.Hash
	bs     int
	force  []resync.Range // bytes records changed since the base: always sent
}

// baseClear runs, in a walk against a base, before the master's entry of
// kind want (a symlink to target) is made at rel: the replica's entry there
// stays if it is of that kind (and, for a file, has no other name), and is
// removed otherwise, as it is where a record of this walk may have changed
// what stands there. A want of 0 removes whatever is there. It reports
// whether the entry stays, and a file's block hashes.
func (p *processor) baseClear(rel string, want resync.Kind, target string) ([]resync.Hash, bool) {
	if p.base == nil {
		return nil, false
	}
	if !p.baseMoved(rel) {
		e, hs := p.base.Lookup(rel)
		if e == nil {
			return nil, false
		}
		if e.Kind == want && (want != resync.KindFile || e.Nlink == 1) && (want != resync.KindSymlink || e.Target == target) {
			return hs, true
		}
	}
	p.emit(journal.Record{Op: journal.OpRmdir, Path: rel})
	return nil, false
}

// baseKeep pairs the master's file n, about to be made at rel, with the
// replica's copy there when it stays: only the blocks that differ go.
func (p *processor) baseKeep(n *node, rel string) {
	if hs, keep := p.baseClear(rel, resync.KindFile, ""); keep {
		p.based[n] = baseFile{hashes: hs, bs: p.base.BlockSize}
	}
}

// pairHeld pairs n, which a repair sends whole, with the replicas' copy of
// it when their manifest has it and no record since moved or replaced it:
// blocks records touched since are sent anyway, others only if they differ.
func (p *processor) pairHeld(n *node) {
	if p.repairHeld == nil {
		return
	}
	rel, ok := p.t.path(n)
	if !ok || p.repairSince.Named(rel) {
		return
	}
	if e, hs := p.repairHeld.Lookup(rel); e != nil && e.Kind == resync.KindFile && e.Nlink == 1 {
		p.based[n] = baseFile{hashes: hs, bs: p.repairHeld.BlockSize, force: p.repairSince.Ranges(rel)}
	}
}

// baseDrop notes that a record of this walk moved or removed what the
// replica had at rel, and everything beneath it.
func (p *processor) baseDrop(rel string) {
	if p.base != nil {
		p.baseGone[rel] = true
	}
}

// baseMoved reports whether rel or a directory above it was dropped.
func (p *processor) baseMoved(rel string) bool {
	return p.baseGone[rel] || beneathAny(rel, p.baseGone)
}

// pruneNames removes from the replica's directory rel what the master's
// listing of it lacks.
func (p *processor) pruneNames(rel string, names []string) {
	var b []byte
	for _, name := range names {
		b = append(append(b, name...), 0)
	}
	p.emit(journal.Record{Op: journal.OpPrune, Path: rel, Data: b})
}

// readBackDiff sends the blocks of f (n's file at pth) that differ from the
// replica's base copy, and cuts the copy to f's size. It returns false when
// the file cannot be read whole (its events follow).
func (p *processor) readBackDiff(pth string, f *os.File, st *unix.Stat_t, b baseFile) bool {
	chunk := max(b.bs, readChunk/b.bs*b.bs)
	var (
		off  int64
		same int64
	)
	for off < st.Size {
		buf := make([]byte, min(int64(chunk), st.Size-off))
		m, err := f.ReadAt(buf, off)
		if err != nil && !errors.Is(err, io.EOF) {
			return false
		}
		buf = buf[:m]
		run := -1 // start in buf of differing blocks not yet sent
		for k := 0; k < m; k += b.bs {
			blk := buf[k:min(k+b.bs, m)]
			i := (off + int64(k)) / int64(b.bs)
			if i < int64(len(b.hashes)) && !b.forced(off+int64(k), int64(len(blk))) && resync.Holds(b.hashes[i], resync.HashOf(blk)) {
				if run >= 0 {
					p.emit(journal.Record{Op: journal.OpWrite, Path: pth, Offset: off + int64(run), Data: buf[run:k]})
					run = -1
				}
				same += int64(len(blk))
				continue
			}
			if run < 0 {
				run = k
			}
		}
		if run >= 0 {
			p.emit(journal.Record{Op: journal.OpWrite, Path: pth, Offset: off + int64(run), Data: buf[run:m]})
		}
		off += int64(m)
		if m < len(buf) || m == 0 {
			break
		}
	}
	// The replica's copy may be longer than what was read.
	p.emit(journal.Record{Op: journal.OpTruncate, Path: pth, Length: off})
	p.s.stats.baseFiles.Add(1)
	p.s.stats.baseSkipped.Add(uint64(same))
	return true
}

// forced reports whether n bytes at off overlap what must be sent anyway.
func (b baseFile) forced(off, n int64) bool { return resync.Overlaps(b.force, off, n) }
