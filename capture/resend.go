package capture

import (
	"path"
	"slices"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/writecap/writecap/journal"
	"github.com/writecap/writecap/resync"
)

// A Repairer is a Sink that keeps a compact record of what changed instead
// of records it could not keep (a spool over its limit). RepairAt is called
// before a repair's first record and returns that record: from seq on, the
// records bring a replica that missed those changes to the master's state.
// It may also return what the replicas hold of the files changed whole: a
// manifest taken at an earlier point, and what the records between that
// point and seq changed. Those files' blocks that the manifest has, and no
// record touched since, are not sent again.
type Repairer interface {
	RepairAt(seq uint64) (ch *journal.Changes, held *resync.Manifest, since *resync.Changed)
}

// Repair asks Run to send again what a Repairer sink's record of changes
// names, within a poll interval.
func (s *Source) Repair() { s.repair.Store(true) }

// repairChanges sends what the sink's record of changes names, from the
// master's files as they are now: names first, bytes after.
func (p *processor) repairChanges() error {
	rp, ok := p.sink.(Repairer)
	if !ok {
		return nil
	}
	if err := p.flush(); err != nil {
		return err
	}
	ch, held, since := rp.RepairAt(p.seq + 1)
	if ch == nil {
		return nil
	}
	p.repairHeld, p.repairSince = held, since
	defer func() { p.repairHeld, p.repairSince = nil, nil }()
	p.s.stats.reconciles.Add(1)
	before, kept := p.seq, p.s.stats.baseSkipped.Load()
	err := p.walk(func() error {
		if ch.Full() {
			return p.resendAll()
		}
		return p.resendChanges(ch)
	})
	if err != nil {
		return err
	}
	p.log.Info("repaired what the replicas missed from the master's files", "root", p.root,
		"paths", ch.Len(), "everything", ch.Full(), "records", p.seq-before,
		"against_replica_manifest", held != nil, "bytes_the_replica_had", p.s.stats.baseSkipped.Load()-kept)
	return p.flush()
}

// resendChanges puts each changed path right: removed where the master no
// longer has it, sent whole where it was created, replaced or moved there,
// and its attributes and changed bytes otherwise.
func (p *processor) resendChanges(ch *journal.Changes) error {
	p.distrust = map[*node]bool{}
	defer func() { p.distrust = nil }()
	var (
		covered = map[string]bool{} // sent whole or removed, with everything beneath
		ranges  []func()
		err     error
	)
	ch.Each(func(rel string, pc journal.PathChange) {
		if err != nil || p.flushErr != nil || beneathAny(rel, covered) {
			return
		}
		if rel == "" { // the root stays; only its entries change
			if pc.What&(journal.ChangedNames|journal.ChangedEntry) != 0 {
				p.prune(p.t.root, "")
			}
			return
		}
		parent, name := p.t.parentOf(rel)
		var n *node
		if parent != nil {
			n = parent.children[name]
		}
		var st unix.Stat_t
		switch {
		case n == nil || unix.Lstat(p.abs(rel), &st) != nil:
			// Gone from the master, or its creation is still on its way
			// and follows as an event.
			p.emit(journal.Record{Op: journal.OpRmdir, Path: rel})
			covered[rel] = true
		case pc.What&(journal.ChangedEntry|journal.ChangedGone) != 0 || n.ino != st.Ino || !sameKind(n, &st):
			p.t.detach(parent, name)
			// A replicas' copy that stays is paired with the master's file:
			// only the blocks that differ go.
			kept := p.keepsHeld(rel, &st)
			if kept {
				p.base, p.baseGone = p.repairHeld, map[string]bool{}
			} else {
				p.emit(journal.Record{Op: journal.OpRmdir, Path: rel})
			}
			err = p.importEntry(parent, name, rel, &st)
			if kept {
				p.base, p.baseGone = nil, nil
			}
			covered[rel] = true
		default:
			if n.symlink {
				p.owner(n, rel, &st)
				return
			}
			p.attrs(n, rel, &st)
			if n.dir && pc.What&journal.ChangedNames != 0 {
				p.prune(n, rel)
			}
			if pc.What&journal.ChangedContent != 0 && !n.dir {
				ranges = append(ranges, p.contentRepair(n, pc))
			}
		}
	})
	if err != nil {
		return err
	}
	for _, f := range ranges {
		f()
	}
	return p.flushErr
}

// contentRepair returns what sends n's changed bytes once the names are
// right.
func (p *processor) contentRepair(n *node, pc journal.PathChange) func() {
	return func() {
		if n.dir || n.symlink {
			return
		}
		if pc.Ranges == nil {
			p.pairHeld(n)
			p.dirtyNode(n, 0, toEOF)
			return
		}
		for _, r := range pc.Ranges {
			hi := int64(toEOF)
			if r.Len >= 0 {
				hi = satAdd(r.Off, r.Len)
			}
			p.dirtyNode(n, r.Off, hi)
		}
	}
}

// sentWhole lists the regular files whose bytes resendChanges would send
// whole: created or replaced, or changed where nobody knows.
func (p *processor) sentWhole(ch *journal.Changes) []string {
	return slices.DeleteFunc(ch.WholePaths(), func(rel string) bool {
		var st unix.Stat_t
		return unix.Lstat(p.abs(rel), &st) != nil || st.Mode&unix.S_IFMT != unix.S_IFREG
	})
}

// keepsHeld reports whether the replicas' manifest has a file with no
// other name at rel, where the master has the regular file st: a repair
// that would replace it sends only the blocks that differ instead.
func (p *processor) keepsHeld(rel string, st *unix.Stat_t) bool {
	if p.repairHeld == nil || st.Mode&unix.S_IFMT != unix.S_IFREG || p.repairSince.Named(rel) {
		return false
	}
	e, _ := p.repairHeld.Lookup(rel)
	return e != nil && e.Kind == resync.KindFile && e.Nlink == 1
}

// resendAll sends the whole tree again over whatever the replica has: the
// record of changes outgrew its limit.
func (p *processor) resendAll() error {
	names := make([]string, 0, len(p.t.root.children))
	for name := range p.t.root.children {
		names = append(names, name)
	}
	ch := journal.NewChanges(0)
	for _, name := range names {
		ch.Mark(name, journal.ChangedEntry)
	}
	p.prune(p.t.root, "")
	return p.resendChanges(ch)
}

// prune removes from the replica's directory what the model's does not hold.
func (p *processor) prune(dir *node, rel string) {
	var b []byte
	for name := range dir.children {
		b = append(append(b, name...), 0)
	}
	p.emit(journal.Record{Op: journal.OpPrune, Path: rel, Data: b})
}

// resume learns the tree without sending it, then sends what may have
// changed since the replicas last had it: what the earlier capture recorded
// and what changed while nothing captured.
func (p *processor) resume(r *Resume) error {
	p.silent, p.resumeSince = true, r.Since.UnixNano()
	p.resumed = journal.NewChanges(0)
	p.resumeDirs = r.Dirs
	err := p.reconcile(true)
	p.silent = false
	if err != nil {
		return err
	}
	var st unix.Stat_t
	if err := unix.Lstat(p.root, &st); err == nil && st.Ctim.Nano() >= p.resumeSince {
		p.resumed.Mark("", journal.ChangedNames)
	}
	found := p.resumed.Len()
	if r.Changes != nil {
		p.resumed.Merge(r.Changes)
	}
	if r.Held != nil {
		var whole []string // everything goes again: there is nothing to pair
		if !p.resumed.Full() {
			whole = p.sentWhole(p.resumed)
		}
		p.repairHeld = r.Held(whole)
	}
	defer func() { p.repairHeld = nil }()
	p.log.Info("resuming replicas of an earlier capture: repairing what may have changed since",
		"recorded", func() int {
			if r.Changes == nil {
				return 0
			}
			return r.Changes.Len()
		}(), "changed_while_not_capturing", found, "since", r.Since, "against_replica_manifest", p.repairHeld != nil)
	kept := p.s.stats.baseSkipped.Load()
	if err := p.walk(func() error {
		if p.resumed.Full() {
			return p.resendAll()
		}
		return p.resendChanges(p.resumed)
	}); err != nil {
		return err
	}
	if p.repairHeld != nil {
		p.log.Info("repaired the earlier capture's replica against its manifest",
			"bytes_the_replica_had", p.s.stats.baseSkipped.Load()-kept)
	}
	p.resumed = nil
	if p.flushErr != nil {
		return p.flushErr
	}
	return p.flush()
}

// changedSince notes, while a resume learns the tree, an entry changed (by
// its change time) since the earlier capture stopped. A directory that is
// where it was loses what it no longer holds; one that moved is sent whole.
func (p *processor) changedSince(rel string, st *unix.Stat_t) {
	if st.Ctim.Nano() < p.resumeSince || rel == "" {
		return
	}
	if st.Mode&unix.S_IFMT == unix.S_IFDIR && p.resumeDirs[st.Ino] == rel {
		p.resumed.Mark(rel, journal.ChangedAttrs|journal.ChangedNames)
		return
	}
	p.resumed.Mark(rel, journal.ChangedEntry)
}

func beneathAny(rel string, dirs map[string]bool) bool {
	for i := strings.LastIndexByte(rel, '/'); i > 0; i = strings.LastIndexByte(rel[:i], '/') {
		if dirs[rel[:i]] {
			return true
		}
	}
	return false
}

// A DirWatcher is a Sink that keeps where the tree's directories are, so
// that a later Resume can tell a directory that moved from one that only
// changed: DirsAt gets them, as of the record before seq, when asked for by
// SnapshotDirs.
type DirWatcher interface {
	DirsAt(seq uint64, dirs map[uint64]string)
}

// SnapshotDirs asks Run for the directories' inode numbers and paths, for a
// DirWatcher sink, within a poll interval.
func (s *Source) SnapshotDirs() { s.snapDirs.Store(true) }

func (p *processor) snapshotDirs() error {
	dw, ok := p.sink.(DirWatcher)
	if !ok {
		return nil
	}
	if err := p.flush(); err != nil {
		return err
	}
	dirs := map[uint64]string{}
	var visit func(n *node, rel string)
	visit = func(n *node, rel string) {
		for name, c := range n.children {
			if c.dir && c.ino != 0 {
				crel := path.Join(rel, name)
				dirs[c.ino] = crel
				visit(c, crel)
			}
		}
	}
	visit(p.t.root, "")
	dw.DirsAt(p.seq+1, dirs)
	return nil
}
