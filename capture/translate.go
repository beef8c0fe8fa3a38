package capture

import (
	"os"
	"path"

	"golang.org/x/sys/unix"

	"github.com/writecap/writecap/journal"
)

const (
	utimeNow  = (1 << 30) - 1
	utimeOmit = (1 << 30) - 2
	// fallocate modes that shift data: not idempotent, so they travel as
	// a rewrite of everything from the offset on.
	fallocShift = unix.FALLOC_FL_COLLAPSE_RANGE | unix.FALLOC_FL_INSERT_RANGE
)

// event translates one kernel event. eb is recycled here unless a record
// keeps pointing into it.
func (p *processor) event(eb *evbuf) error {
	p.s.stats.events.Add(1)
	h := hdrOf(eb.b)
	p.kseq = h.Seq
	kept := false
	if h.Type == evWrite {
		kept = p.write(eb)
	} else {
		p.meta(eb)
	}
	if kept {
		p.held = append(p.held, eb)
	} else if p.recycle != nil {
		p.recycle(eb)
	}
	if len(p.lossDue) > 0 {
		p.repairLosses(false)
	}
	return nil
}

// write returns whether a record now refers to eb's bytes.
func (p *processor) write(eb *evbuf) bool {
	w := writeOf(eb.b)
	if w.H.Flags&fLast != 0 {
		p.s.stats.writeCalls.Add(1)
	}
	if w.H.Seq < p.scanStart && p.scanFull {
		return false // the last walk read these bytes back
	}
	n := p.t.byIno[w.H.Ino]
	sp := span{enter: w.H.EnterNs, exit: w.H.ExitNs, lo: w.Lo, hi: w.Hi}
	if n != nil && covered(n, w.H.Seq) {
		return false
	}
	if n == nil || n.dir || n.symlink {
		// The kernel saw it beneath the root but the model has no such file:
		// a creation was missed. Reconciliation finds and copies it.
		p.needReconcile("write to a file the model does not know", false)
		return false
	}
	pth, ok := p.t.path(n)
	if !ok {
		return false // unlinked while open
	}
	kept := false
	if w.Off < 0 || w.Lo < 0 {
		// An append whose file shrank before the kernel reported it: the
		// offset is unknowable, the race repair below covers the bytes.
		p.dirtyNode(n, 0, toEOF)
	} else if w.H.Flags&fDirty != 0 {
		p.dirtyNode(n, w.Lo, w.Hi)
	} else {
		data := writeData(eb.b)
		p.emit(journal.Record{Op: journal.OpWrite, Path: pth, Offset: w.Off, Data: data})
		p.s.stats.writeBytes.Add(uint64(len(data)))
		kept = true
	}
	if lo, hi, race := p.races.check(w.H.Ino, sp, w.H.Flags&fLast != 0); race {
		p.s.stats.races.Add(1)
		p.dirtyNode(n, lo, hi)
	}
	if w.H.Flags&(fSync|fLast) == fSync|fLast {
		p.barrier(n, pth)
	}
	return kept
}

func (p *processor) meta(eb *evbuf) {
	m := metaOf(eb.b)
	h := &m.H
	if h.Flags&(fPathTrunc|fBaseOutside) != 0 {
		p.needReconcile("a path the kernel could not report whole", false)
		return
	}
	if h.Seq < p.scanStart && p.scanFull {
		// The last walk read names, attributes and bytes after this.
		return
	}
	if nameOps[h.Type] || attrOps[h.Type] {
		switch {
		case h.Seq < p.scanStart:
			// The last walk of the master already saw this change.
			if h.Type == evOpen {
				p.openSeen(m)
			}
			return
		case h.Seq < p.scanEnd:
			// It raced the walk: the walk may have seen half of it.
			defer p.needReconcile("names or attributes changed during a walk of the master", false)
		}
	}
	sp := span{enter: h.EnterNs, exit: h.ExitNs}
	p.touched = p.touched[:0]
	defer func() {
		if nsOps[h.Type] {
			p.ns.note(sp, p.touched, p)
		}
	}()
	switch h.Type {
	case evOpen:
		p.open(m)
	case evTruncate:
		n, pth := p.target(m, true)
		if n == nil || covered(n, h.Seq) {
			return
		}
		p.emit(journal.Record{Op: journal.OpTruncate, Path: pth, Length: m.A})
		p.contentRace(n, span{enter: h.EnterNs, exit: h.ExitNs, lo: m.A, hi: toEOF})
	case evFallocate:
		n, pth := p.target(m, true)
		if n == nil || covered(n, h.Seq) {
			return
		}
		if m.Mode&fallocShift != 0 {
			p.dirtyNode(n, m.A, toEOF)
		} else {
			p.emit(journal.Record{Op: journal.OpFallocate, Path: pth, Mode: m.Mode, Offset: m.A, Length: m.B})
		}
		p.contentRace(n, span{enter: h.EnterNs, exit: h.ExitNs, lo: m.A, hi: satAdd(m.A, m.B)})
	case evMkdir:
		p.mkdir(m)
	case evRmdir, evUnlink:
		p.remove(m)
	case evRename:
		p.rename(m)
	case evLink:
		p.link(m)
	case evSymlink:
		p.symlink(m)
	case evChmod:
		if n, pth := p.target(m, h.Flags&fNoFollow == 0); n != nil && !n.symlink {
			p.setattr(n, pth, journal.Record{Op: journal.OpSetattr, Path: pth, Flags: journal.SetMode, Mode: m.Mode & 07777})
		}
	case evChown:
		if n, pth := p.target(m, h.Flags&fNoFollow == 0); n != nil {
			p.setattr(n, pth, journal.Record{Op: journal.OpSetattr, Path: pth, Flags: journal.SetOwner, UID: m.Uid, GID: m.Gid})
		}
	case evUtimes:
		p.utimes(m)
	case evFsync:
		if n, pth := p.target(m, true); n != nil {
			p.barrier(n, pth)
		}
	case evSyncfs, evSync:
		p.barrier(nil, "")
	case evMmap:
		p.mapped[h.Ino] = true
	case evMsync:
		for ino := range p.mapped {
			p.dirtyIno(ino, 0, toEOF)
		}
	}
}

// nsOps change names or attributes: when two of them are in the kernel
// together on the same directory, their order is unknown.
var nsOps = map[uint32]bool{
	evOpen: true, evMkdir: true, evRmdir: true, evUnlink: true, evRename: true,
	evLink: true, evSymlink: true, evChmod: true, evChown: true, evUtimes: true,
}

// nameOps change names: a walk of the master reflects them.
var nameOps = map[uint32]bool{
	evOpen: true, evMkdir: true, evRmdir: true, evUnlink: true, evRename: true,
	evLink: true, evSymlink: true,
}

// attrOps change modes and owners: a walk compares them with what the
// replica was sent, and by name, which an event processed after the walk
// would resolve against names newer than its own.
var attrOps = map[uint32]bool{evChmod: true, evChown: true}

// openSeen applies the truncation of an open that a walk already saw the
// name of: the walk copies names, not bytes.
func (p *processor) openSeen(m *metaEv) {
	if m.AtFlags&unix.O_TRUNC == 0 {
		return
	}
	if n := p.t.byIno[m.H.Ino]; n != nil && !n.dir && !n.symlink && !covered(n, m.H.Seq) {
		if pth, ok := p.t.path(n); ok {
			p.emit(journal.Record{Op: journal.OpTruncate, Path: pth})
		}
	}
}

// touch notes a directory an operation changed, for race detection.
func (p *processor) touch(dir *node) {
	if dir != nil {
		p.touched = append(p.touched, dir)
	}
}

func parentNode(n *node) *node {
	if len(n.links) == 0 {
		return nil
	}
	return n.links[0].parent
}

func satAdd(a, b int64) int64 {
	if b > toEOF-a {
		return toEOF
	}
	return a + b
}

func (p *processor) contentRace(n *node, sp span) {
	if lo, hi, race := p.races.check(n.ino, sp, true); race {
		p.s.stats.races.Add(1)
		p.dirtyNode(n, lo, hi)
	}
}

// barrier makes everything up to here durable on the replica; stores
// through shared mappings are invisible, so mapped files are read back first.
func (p *processor) barrier(n *node, pth string) {
	if n == nil {
		for ino := range p.mapped {
			p.dirtyIno(ino, 0, toEOF)
		}
	} else if p.mapped[n.ino] {
		p.dirtyNode(n, 0, toEOF)
	}
	p.emit(journal.Record{Op: journal.OpBarrier, Path: pth})
}

// target resolves the single object an event is about.
func (p *processor) target(m *metaEv, follow bool) (*node, string) {
	if m.H.Flags&fFD != 0 {
		n := p.t.byIno[m.H.Ino]
		if n == nil {
			p.needReconcile("change to a file the model does not know", false)
			return nil, ""
		}
		pth, ok := p.t.path(n)
		if !ok {
			return nil, ""
		}
		p.touch(parentNode(n))
		return n, pth
	}
	rel, res := p.resolve(cstr(&m.Path1), m.DirIno, follow)
	if res != inside {
		if res == unknown {
			p.needReconcile("path relative to a directory the model does not know", false)
		}
		return nil, ""
	}
	n := p.t.lookup(rel)
	if n == nil {
		p.needReconcile("change to a path the model does not have", false)
		return nil, ""
	}
	p.touch(parentNode(n))
	return n, rel
}

func (p *processor) open(m *metaEv) {
	parent := p.dirByIno(m.DirIno)
	if parent == nil {
		p.needReconcile("file created in a directory the model does not know", false)
		return
	}
	dir, ok := p.t.path(parent)
	if !ok {
		return
	}
	p.touch(parent)
	name := cstr(&m.Path1)
	pth := path.Join(dir, name)
	ino := m.H.Ino
	cur := parent.children[name]
	switch {
	case cur != nil && cur.ino == ino:
		if m.AtFlags&unix.O_TRUNC != 0 && !covered(cur, m.H.Seq) {
			p.emit(journal.Record{Op: journal.OpTruncate, Path: pth})
			p.contentRace(cur, span{enter: m.H.EnterNs, exit: m.H.ExitNs, lo: 0, hi: toEOF})
		}
		return
	case cur != nil:
		p.removeName(parent, name, pth)
	}
	if m.H.Flags&fCreated != 0 {
		// A new inode: a node still holding the number is an older file
		// whose removal the model has not seen yet.
		if old := p.t.byIno[ino]; old != nil {
			p.staleIno(old)
		}
	} else if known := p.t.byIno[ino]; known != nil && !known.dir {
		// The inode has another name the model knows: a link it missed.
		if from, ok := p.t.path(known); ok {
			p.emit(journal.Record{Op: journal.OpLink, Path: from, Path2: pth})
			p.t.attach(parent, name, known)
			return
		}
	}
	n := &node{ino: ino}
	p.emit(journal.Record{Op: journal.OpCreate, Path: pth, Mode: m.Mode & 07777})
	p.emitAttrs(n, journal.Record{Op: journal.OpSetattr, Path: pth, Flags: journal.SetOwner | journal.SetMode, Mode: m.Mode & 07777, UID: m.Uid, GID: m.Gid})
	p.t.attach(parent, name, n)
	if m.A > 0 {
		// It already had bytes: opened with O_CREAT but existed unseen.
		p.dirtyNode(n, 0, toEOF)
	}
}

// placeName resolves a name that an operation creates or removes (a final
// symlink is not followed) and finds its directory in the model.
func (p *processor) placeName(raw string, dirIno uint64, what string) (string, *node, string, bool) {
	rel, res := p.resolve(raw, dirIno, false)
	if res != inside {
		p.unresolved(res)
		return "", nil, "", false
	}
	parent, name := p.t.parentOf(rel)
	if parent == nil || rel == "" {
		p.needReconcile(what+" under a parent the model does not have", false)
		return "", nil, "", false
	}
	p.touch(parent)
	return rel, parent, name, true
}

func (p *processor) mkdir(m *metaEv) {
	rel, parent, name, ok := p.placeName(cstr(&m.Path1), m.DirIno, "directory created")
	if !ok {
		return
	}
	if cur := parent.children[name]; cur != nil {
		if cur.dir {
			return
		}
		p.removeName(parent, name, rel)
	}
	n := &node{dir: true, children: map[string]*node{}}
	p.emitAttrs(n, journal.Record{Op: journal.OpMkdir, Path: rel, Mode: m.Mode & 07777})
	p.t.attach(parent, name, n)
	if st, ok := p.learnIno(n, rel); ok {
		p.emitAttrs(n, journal.Record{Op: journal.OpSetattr, Path: rel, Flags: journal.SetOwner | journal.SetMode, Mode: st.Mode & 07777, UID: st.Uid, GID: st.Gid})
	}
}

func (p *processor) remove(m *metaEv) {
	rel, parent, name, ok := p.placeName(cstr(&m.Path1), m.DirIno, "removal")
	if !ok {
		return
	}
	op := journal.OpUnlink
	if m.H.Type == evRmdir {
		op = journal.OpRmdir
	}
	p.emit(journal.Record{Op: op, Path: rel})
	p.t.detach(parent, name)
}

// removeName drops whatever the model has at parent/name, on both sides.
func (p *processor) removeName(parent *node, name, rel string) {
	cur := parent.children[name]
	if cur == nil {
		return
	}
	op := journal.OpUnlink
	if cur.dir {
		op = journal.OpRmdir
	}
	p.baseDrop(rel)
	p.emit(journal.Record{Op: op, Path: rel})
	p.t.detach(parent, name)
}

func (p *processor) rename(m *metaEv) {
	oldRel, oldRes := p.resolve(cstr(&m.Path1), m.DirIno, false)
	newRel, newRes := p.resolve(cstr(&m.Path2), m.Dir2Ino, false)
	if oldRes == unknown || newRes == unknown {
		p.unresolved(unknown)
		return
	}
	exchange := m.AtFlags&unix.RENAME_EXCHANGE != 0
	switch {
	case oldRes == inside && newRes == inside:
		op, _ := p.t.parentOf(oldRel)
		nnp, nn := p.t.parentOf(newRel)
		if op == nil || nnp == nil || oldRel == "" || newRel == "" {
			p.needReconcile("rename under a parent the model does not have", false)
			return
		}
		p.touch(op)
		p.touch(nnp)
		_, on := path.Split(oldRel)
		src := op.children[on]
		if src == nil {
			p.needReconcile("rename of a name the model does not have", false)
			return
		}
		if src.dir && isAncestor(src, nnp) {
			p.needReconcile("rename into its own subtree", false)
			return
		}
		if exchange && nnp.children[nn] == nil {
			p.needReconcile("exchange with a name the model does not have", false)
			return
		}
		p.emit(journal.Record{Op: journal.OpRename, Path: oldRel, Path2: newRel, Flags: m.AtFlags})
		if exchange {
			p.t.exchange(op, on, nnp, nn)
			return
		}
		p.t.move(op, on, nnp, nn)
		p.retryDeferredNode(src)
	case oldRes == inside:
		// Moved out of the tree: gone for the replica.
		parent, name := p.t.parentOf(oldRel)
		if parent == nil {
			return
		}
		p.removeName(parent, name, oldRel)
		if exchange {
			p.appeared(oldRel)
		}
	case newRes == inside:
		p.appeared(newRel)
	}
}

func (p *processor) link(m *metaEv) {
	newRel, parent, name, ok := p.placeName(cstr(&m.Path2), m.Dir2Ino, "link")
	if !ok {
		return
	}
	var src *node
	if m.H.Flags&fEmptyPath != 0 {
		src = p.t.byIno[m.H.Ino]
	} else {
		oldRel, oldRes := p.resolve(cstr(&m.Path1), m.DirIno, m.AtFlags&unix.AT_SYMLINK_FOLLOW != 0)
		if oldRes == unknown {
			p.unresolved(oldRes)
			return
		}
		if oldRes == inside {
			src = p.t.lookup(oldRel)
		}
	}
	if src == nil || src.dir {
		p.appeared(newRel)
		return
	}
	from, ok := p.t.path(src)
	if !ok {
		p.appeared(newRel)
		return
	}
	p.removeName(parent, name, newRel)
	p.emit(journal.Record{Op: journal.OpLink, Path: from, Path2: newRel})
	p.t.attach(parent, name, src)
}

func (p *processor) symlink(m *metaEv) {
	rel, parent, name, ok := p.placeName(cstr(&m.Path2), m.Dir2Ino, "symlink")
	if !ok {
		return
	}
	target := cstr(&m.Path1)
	p.removeName(parent, name, rel)
	n := &node{symlink: true, target: target}
	p.emit(journal.Record{Op: journal.OpSymlink, Path: rel, Path2: target})
	p.t.attach(parent, name, n)
	var st unix.Stat_t
	if unix.Lstat(p.abs(rel), &st) == nil && st.Mode&unix.S_IFMT == unix.S_IFLNK && readlink(p.abs(rel)) == target && p.t.byIno[st.Ino] == nil {
		p.t.setIno(n, st.Ino)
		p.owner(n, rel, &st)
	}
}

func (p *processor) utimes(m *metaEv) {
	n, pth := p.target(m, m.H.Flags&fNoFollow == 0)
	if n == nil || covered(n, m.H.Seq) {
		return
	}
	r := journal.Record{Op: journal.OpSetattr, Path: pth}
	var st unix.Stat_t
	haveStat := unix.Lstat(p.abs(pth), &st) == nil
	set := func(sec, nsec int64, mask uint32, now unix.Timespec) int64 {
		switch nsec {
		case utimeOmit:
			return 0
		case utimeNow:
			if !haveStat {
				return 0
			}
			r.Flags |= mask
			return now.Nano()
		}
		r.Flags |= mask
		return sec*1e9 + nsec
	}
	r.Atime = set(m.A, m.B, journal.SetAtime, st.Atim)
	r.Mtime = set(m.C, m.D, journal.SetMtime, st.Mtim)
	if r.Flags != 0 {
		p.setattr(n, pth, r)
	}
}

// setattr sends the master's current value of the attributes r changes when
// the file there is still n: an attribute record replayed after a walk that
// already saw a later change must not turn it back. The event's own values
// serve when the name has moved on.
func (p *processor) setattr(n *node, pth string, r journal.Record) {
	var st unix.Stat_t
	if n.ino != 0 && unix.Lstat(p.abs(pth), &st) == nil && st.Ino == n.ino {
		r.Mode, r.UID, r.GID = st.Mode&07777, st.Uid, st.Gid
		r.Atime, r.Mtime = st.Atim.Nano(), st.Mtim.Nano()
		if n.symlink {
			r.Flags &^= journal.SetMode
		}
	}
	p.emitAttrs(n, r)
}

func readlink(p string) string {
	t, _ := os.Readlink(p)
	return t
}

func (p *processor) unresolved(res resolution) {
	if res == unknown {
		p.needReconcile("path relative to a directory the model does not know", false)
	}
}
