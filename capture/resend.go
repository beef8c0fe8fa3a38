package capture

import (
	"strings"

	"golang.org/x/sys/unix"

	"github.com/writecap/writecap/journal"
)

// A Repairer is a Sink that keeps a compact record of what changed instead
// of records it could not keep (a spool over its limit). RepairAt is called
// before a repair's first record and returns that record: from seq on, the
// records bring a replica that missed those changes to the master's state.
type Repairer interface {
	RepairAt(seq uint64) *journal.Changes
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
	ch := rp.RepairAt(p.seq + 1)
	if ch == nil {
		return nil
	}
	p.s.stats.reconciles.Add(1)
	before := p.seq
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
		"paths", ch.Len(), "everything", ch.Full(), "records", p.seq-before)
	return p.flush()
}

// resendChanges puts each changed path right: removed where the master no
// longer has it, sent whole where it was created, replaced or moved there,
// and its attributes and changed bytes otherwise.
func (p *processor) resendChanges(ch *journal.Changes) error {
	var (
		covered = map[string]bool{} // sent whole or removed, with everything beneath
		ranges  []func()
		err     error
	)
	ch.Each(func(rel string, pc journal.PathChange) {
		if err != nil || p.flushErr != nil || beneathAny(rel, covered) {
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
			p.emit(journal.Record{Op: journal.OpRmdir, Path: rel})
			p.t.detach(parent, name)
			err = p.importEntry(parent, name, rel, &st)
			covered[rel] = true
			if nn := parent.children[name]; nn != nil && pc.What&journal.ChangedContent != 0 {
				// A further name of a file the replica has: its bytes may
				// be stale there.
				ranges = append(ranges, p.contentRepair(nn, pc))
			}
		default:
			if n.symlink {
				p.emit(journal.Record{Op: journal.OpSetattr, Path: rel, Flags: journal.SetOwner, UID: st.Uid, GID: st.Gid})
				return
			}
			p.attrs(rel, &st)
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
	p.emit(journal.Record{Op: journal.OpPrune, Data: pruneList(names)})
	return p.resendChanges(ch)
}

func pruneList(names []string) []byte {
	var b []byte
	for _, n := range names {
		b = append(append(b, n...), 0)
	}
	return b
}

func beneathAny(rel string, dirs map[string]bool) bool {
	for i := strings.LastIndexByte(rel, '/'); i > 0; i = strings.LastIndexByte(rel[:i], '/') {
		if dirs[rel[:i]] {
			return true
		}
	}
	return false
}
