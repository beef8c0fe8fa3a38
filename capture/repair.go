package capture

import (
	"errors"
	"io"
	"os"

	"golang.org/x/sys/unix"

	"github.com/writecap/writecap/journal"
)

// readChunk is the size of write records made from bytes read back.
const readChunk = 1 << 20

func (p *processor) dirtyIno(ino uint64, lo, hi int64) {
	n := p.t.byIno[ino]
	if n == nil || n.dir || n.symlink {
		return
	}
	p.dirtyNode(n, lo, hi)
}

// dirtyNode reads [lo, hi) of n from the master now and sends it as writes.
// The master may be ahead of the event stream; the records that follow
// replay on top, so the replica converges to the master.
func (p *processor) dirtyNode(n *node, lo, hi int64) {
	if p.silent {
		return
	}
	p.s.stats.dirty.Add(1)
	if !p.readBack(n, lo, hi) {
		d, ok := p.deferred[n.ino]
		if ok {
			lo, hi = min(lo, d.lo), max(hi, d.hi)
		}
		p.deferred[n.ino] = span{lo: lo, hi: hi}
	}
}

// readBack returns false when the file at n's path is not n on the master
// (yet): the range then waits for the event that moves it there.
func (p *processor) readBack(n *node, lo, hi int64) (done bool) {
	pth, ok := p.t.path(n)
	if !ok {
		delete(p.based, n)
		return true // no name left: nothing to repair
	}
	if lo == 0 && hi == toEOF {
		// Events numbered before the read began are in what it reads.
		if seq, err := p.s.k.seqNow(); err == nil {
			defer func() {
				if done {
					n.wholeAt = max(n.wholeAt, seq)
				}
			}()
		}
	}
	f, err := os.OpenFile(p.abs(pth), os.O_RDONLY|unix.O_NOFOLLOW, 0)
	if err != nil {
		return false
	}
	defer f.Close()
	var st unix.Stat_t
	if unix.Fstat(int(f.Fd()), &st) != nil || st.Ino != n.ino {
		return false
	}
	if b, ok := p.based[n]; ok {
		// The first read of a file paired with the replica's copy compares
		// it whole, whatever range asked: the copy differs anywhere.
		if !p.readBackDiff(pth, f, &st, b) {
			return false
		}
		delete(p.based, n)
		return true
	}
	end := min(hi, st.Size)
	for off := lo; off < end; {
		buf := make([]byte, min(int64(readChunk), end-off))
		m, err := f.ReadAt(buf, off)
		if m > 0 {
			p.emit(journal.Record{Op: journal.OpWrite, Path: pth, Offset: off, Data: buf[:m]})
			off += int64(m)
		}
		if errors.Is(err, io.EOF) {
			end = off
			break
		}
		if err != nil {
			return false
		}
	}
	if hi > end {
		p.emit(journal.Record{Op: journal.OpTruncate, Path: pth, Length: end})
	}
	return true
}

func (p *processor) retryDeferredNode(n *node) {
	if d, ok := p.deferred[n.ino]; ok && p.readBack(n, d.lo, d.hi) {
		delete(p.deferred, n.ino)
	}
	for _, c := range n.children {
		p.retryDeferredNode(c)
	}
}

func (p *processor) retryDeferred() {
	for ino, d := range p.deferred {
		n := p.t.byIno[ino]
		if n == nil || p.readBack(n, d.lo, d.hi) {
			delete(p.deferred, ino)
		}
	}
}

// appeared handles something moved or linked in from outside the root: it
// is new to the replica, so it is copied whole.
func (p *processor) appeared(rel string) {
	parent, name := p.t.parentOf(rel)
	if parent == nil || rel == "" {
		p.needReconcile("entry appeared under a parent the model does not have", false)
		return
	}
	p.removeName(parent, name, rel)
	var st unix.Stat_t
	if err := unix.Lstat(p.abs(rel), &st); err != nil {
		// Already gone or moved again: later events or a reconciliation
		// settle it.
		p.needReconcile("entry appeared and vanished", false)
		return
	}
	if err := p.walk(func() error { return p.importEntry(parent, name, rel, &st) }); err != nil {
		p.needReconcile("entry appeared but could not be read: "+err.Error(), false)
	}
}
