package capture

import (
	"errors"
	"fmt"
	"os"
	"path"
	"sort"

	"golang.org/x/sys/unix"

	"github.com/writecap/writecap/journal"
	"github.com/writecap/writecap/resync"
)

// reconcile compares the master's tree with the model and sends what makes
// the replica match it. With full set, file contents are sent too (the
// replica's copy is not trusted); otherwise only names, and the contents of
// files new to the model.
func (p *processor) reconcile(full bool) error {
	var st unix.Stat_t
	if err := unix.Lstat(p.root, &st); err != nil {
		return fmt.Errorf("capture: root %s: %w", p.root, err)
	}
	if st.Ino != p.t.root.ino {
		return fmt.Errorf("capture: root %s was replaced (inode %d, was %d)", p.root, st.Ino, p.t.root.ino)
	}
	// Events numbered before the walk are already in what it sees; those
	// numbered during it may or may not be.
	start, err := p.s.k.seqNow()
	if err != nil {
		return err
	}
	p.scanStart = start // what the walk sends whole covers the events before
	if err := p.walk(func() error { return p.reconcileDir(p.t.root, "", full) }); err != nil {
		return err
	}
	end, err := p.s.k.seqNow()
	if err != nil {
		return err
	}
	p.scanEnd, p.scanFull = end, full
	return nil
}

// walk runs fn, which sends names, then the bytes of the files it found:
// bytes go after every name is in place, so that they reach the file the
// replica's names now lead to.
func (p *processor) walk(fn func() error) error {
	p.walkFirst = map[*node]string{}
	err := fn()
	for _, n := range p.walkDirty {
		p.dirtyNode(n, 0, toEOF)
	}
	p.walkDirty, p.walkFirst = p.walkDirty[:0], nil
	return err
}

func (p *processor) reconcileDir(dn *node, rel string, full bool) error {
	var names []string
	f, err := os.Open(p.abs(rel))
	if err == nil {
		names, err = f.Readdirnames(-1)
		f.Close()
	}
	if err != nil {
		// Removed or replaced on the master since, even between the open
		// and the listing: its events follow.
		if errors.Is(err, os.ErrNotExist) || errors.Is(err, unix.ENOTDIR) {
			return nil
		}
		return fmt.Errorf("capture: read directory %s: %w", p.abs(rel), err)
	}
	sort.Strings(names)
	if p.base != nil {
		p.pruneNames(rel, names)
	}
	seen := make(map[string]bool, len(names))
	for _, name := range names {
		crel := path.Join(rel, name)
		var st unix.Stat_t
		if err := unix.Lstat(p.abs(crel), &st); err != nil {
			continue // vanished since the listing
		}
		seen[name] = true
		if err := p.reconcileEntry(dn, name, crel, &st, full); err != nil {
			return err
		}
		if p.flushErr != nil {
			return p.flushErr
		}
	}
	for name := range dn.children {
		if !seen[name] {
			p.removeName(dn, name, path.Join(rel, name))
		}
	}
	return nil
}

func sameKind(n *node, st *unix.Stat_t) bool {
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFDIR:
		return n.dir
	case unix.S_IFLNK:
		return n.symlink
	case unix.S_IFREG:
		return !n.dir && !n.symlink
	}
	return false
}

func (p *processor) reconcileEntry(dn *node, name, rel string, st *unix.Stat_t, full bool) error {
	cur := dn.children[name]
	// Directories and symlinks may not know their inode yet (unless another
	// node has it: then this is a second name of that one); a file always
	// does, and one that lost it was an older file under a reused number.
	unknownIno := cur != nil && cur.ino == 0 && (cur.dir || cur.symlink) && p.t.byIno[st.Ino] == nil
	if cur != nil && (cur.ino == st.Ino || unknownIno) && sameKind(cur, st) {
		if cur.symlink {
			if t, err := os.Readlink(p.abs(rel)); err == nil && t != cur.target {
				p.removeName(dn, name, rel)
				return p.importEntry(dn, name, rel, st)
			}
		}
		p.t.setIno(cur, st.Ino)
		delete(p.unknownDirIno, cur)
		if p.assert {
			p.reassert(cur, rel, st)
		}
		switch {
		case full:
			p.attrs(cur, rel, st)
			if !cur.dir && !cur.symlink {
				p.walkDirty = append(p.walkDirty, cur)
			}
		case p.assert:
		case !cur.attr.matches(st, cur.symlink):
			// A directory learned only now has only its mkdir's mode; a
			// chmod or chown addressed by a name the model had wrong
			// reached another file.
			if cur.symlink {
				p.owner(cur, rel, st)
			} else {
				p.attrs(cur, rel, st)
			}
		}
		if cur.dir {
			return p.reconcileDir(cur, rel, full)
		}
		return nil
	}
	if cur != nil {
		p.removeName(dn, name, rel)
	}
	if known := p.t.byIno[st.Ino]; known != nil && known != p.t.root && sameKind(known, st) &&
		(!known.symlink || known.target == readlink(p.abs(rel))) {
		if !known.dir {
			return p.importEntry(dn, name, rel, st) // links it when it can
		}
		if from, ok := p.t.path(known); ok && !isAncestor(known, dn) {
			p.baseDrop(from)
			p.baseDrop(rel)
			p.emit(journal.Record{Op: journal.OpRename, Path: from, Path2: rel})
			if p.assert || p.base != nil {
				// A replica being copied may not hold from: it gets the
				// directory all the same, and the walk fills it.
				p.emit(journal.Record{Op: journal.OpMkdir, Path: rel, Mode: st.Mode & 07777})
			}
			p.attrs(known, rel, st)
			op := known.links[0]
			p.t.move(op.parent, op.name, dn, name)
			return p.reconcileDir(known, rel, full)
		}
	}
	return p.importEntry(dn, name, rel, st)
}

// linkSource finds a name of n that the master still has as inode ino, to
// link a further name to: the one this walk already put right if any. None
// means the number was reused and n is an older file whose removal is still
// on its way.
func (p *processor) linkSource(n *node, ino uint64) (string, bool) {
	if first, ok := p.walkFirst[n]; ok {
		return first, true
	}
	for _, l := range n.links {
		dir, ok := p.t.path(l.parent)
		if !ok {
			continue
		}
		rel := path.Join(dir, l.name)
		var st unix.Stat_t
		if unix.Lstat(p.abs(rel), &st) == nil && st.Ino == ino {
			return rel, true
		}
	}
	return "", false
}

// staleIno takes a reused inode number from a file the master has removed
// (its removal still on its way), so that the number names only the new one.
func (p *processor) staleIno(n *node) {
	if p.t.byIno[n.ino] == n {
		delete(p.t.byIno, n.ino)
	}
	n.ino = 0
}

// wholeSeq is the wholeAt of what the current walk sends whole.
func (p *processor) wholeSeq() uint64 {
	if p.silent {
		return 0
	}
	return p.scanStart
}

// covered reports whether the walk that sent n whole already read an event
// numbered seq (or it was about an older file with n's number).
func covered(n *node, seq uint64) bool { return seq < n.wholeAt }

// importEntry sends something the replica does not have, whole.
func (p *processor) importEntry(dn *node, name, rel string, st *unix.Stat_t) error {
	if p.silent {
		p.changedSince(rel, st)
	}
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFDIR:
		n := &node{ino: st.Ino, dir: true, children: map[string]*node{}, wholeAt: p.wholeSeq()}
		p.baseClear(rel, resync.KindDir, "")
		p.emit(journal.Record{Op: journal.OpMkdir, Path: rel, Mode: st.Mode & 07777})
		p.attrs(n, rel, st)
		p.t.attach(dn, name, n)
		return p.reconcileDir(n, rel, true)
	case unix.S_IFREG:
		if known := p.t.byIno[st.Ino]; known != nil && !known.dir && !known.symlink {
			if from, ok := p.linkSource(known, st.Ino); ok {
				p.baseClear(rel, 0, "")
				p.emit(journal.Record{Op: journal.OpLink, Path: from, Path2: rel})
				p.t.attach(dn, name, known)
				if p.distrust != nil && !p.distrust[known] {
					// A repair links to what the replica has, whose bytes
					// it does not trust: send them after the names.
					p.distrust[known] = true
					p.walkDirty = append(p.walkDirty, known)
				}
				return nil
			}
			p.staleIno(known)
		}
		n := &node{ino: st.Ino, wholeAt: p.wholeSeq()}
		p.baseKeep(n, rel)
		p.emit(journal.Record{Op: journal.OpCreate, Path: rel, Mode: st.Mode & 07777})
		p.attrs(n, rel, st)
		p.t.attach(dn, name, n)
		p.walkFirst[n] = rel
		p.walkDirty = append(p.walkDirty, n)
		if p.distrust != nil {
			p.distrust[n] = true
		}
	case unix.S_IFLNK:
		target, err := os.Readlink(p.abs(rel))
		if err != nil {
			return nil // gone again; its events follow
		}
		if known := p.t.byIno[st.Ino]; known != nil && known.symlink && known.target == target {
			if from, ok := p.linkSource(known, st.Ino); ok {
				p.baseClear(rel, 0, "")
				p.emit(journal.Record{Op: journal.OpLink, Path: from, Path2: rel})
				p.t.attach(dn, name, known)
				return nil
			}
			p.staleIno(known)
		}
		p.baseClear(rel, resync.KindSymlink, target)
		n := &node{ino: st.Ino, symlink: true, target: target, wholeAt: p.wholeSeq()}
		p.walkFirst[n] = rel
		p.emit(journal.Record{Op: journal.OpSymlink, Path: rel, Path2: target})
		p.owner(n, rel, st)
		p.t.attach(dn, name, n)
	default:
		p.s.stats.unsupported.Add(1)
		p.log.Warn("not replicated: only directories, regular files and symlinks are", "path", p.abs(rel), "mode", fmt.Sprintf("%#o", st.Mode))
	}
	return nil
}

// resend sends the attributes and contents of everything beneath dir again.
func (p *processor) resend(dir *node, rel string) {
	for name, c := range dir.children {
		crel := path.Join(rel, name)
		var st unix.Stat_t
		if unix.Lstat(p.abs(crel), &st) != nil || st.Ino != c.ino {
			continue // changed again since: its events follow
		}
		if c.symlink {
			p.owner(c, crel, &st)
			continue
		}
		p.attrs(c, crel, &st)
		if c.dir {
			p.resend(c, crel)
		} else {
			p.dirtyNode(c, 0, toEOF)
		}
	}
}

// reassert sends again what the model says stands at rel. Every record is a
// no-op where the replica already agrees, and puts the entry right where it
// does not: the replica can only drift from the model where it had to
// tolerate a record that raced.
func (p *processor) reassert(n *node, rel string, st *unix.Stat_t) {
	switch {
	case n.dir:
		p.baseClear(rel, resync.KindDir, "")
		p.emit(journal.Record{Op: journal.OpMkdir, Path: rel, Mode: st.Mode & 07777})
	case n.symlink:
		if first, ok := p.walkFirst[n]; ok && first != rel {
			p.baseClear(rel, 0, "")
			p.emit(journal.Record{Op: journal.OpLink, Path: first, Path2: rel})
		} else {
			p.walkFirst[n] = rel
			p.baseClear(rel, resync.KindSymlink, n.target)
			p.emit(journal.Record{Op: journal.OpSymlink, Path: rel, Path2: n.target})
		}
	default:
		// The first name this walk met is the one the others link to: it
		// has been put right already, names met earlier in the model may not.
		if first, ok := p.walkFirst[n]; ok && first != rel {
			p.baseClear(rel, 0, "")
			p.emit(journal.Record{Op: journal.OpLink, Path: first, Path2: rel})
		} else {
			p.walkFirst[n] = rel
			p.baseKeep(n, rel)
			p.emit(journal.Record{Op: journal.OpCreate, Path: rel, Mode: st.Mode & 07777})
		}
	}
	p.attrs(n, rel, st)
}
