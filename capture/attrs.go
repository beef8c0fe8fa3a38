package capture

import (
	"math"

	"golang.org/x/sys/unix"

	"github.com/writecap/writecap/journal"
)

// keepID is the owner id that leaves the owner's uid or gid unchanged.
const keepID = math.MaxUint32

// attrs is what the replica was last sent of a node's mode and owner. A
// walk of the master compares them with what it finds, so a chmod or chown
// that capture addressed by a name the model had wrong (the walk puts the
// names right) reaches the file it was made to.
type attrs struct {
	mode, uid, gid uint32
	sent           uint32 // journal.SetMode, journal.SetOwner: known values
}

func (a *attrs) note(r *journal.Record) {
	if r.Op == journal.OpMkdir {
		a.mode, a.sent = r.Mode, a.sent|journal.SetMode
		return
	}
	if r.Op != journal.OpSetattr {
		return
	}
	if r.Flags&journal.SetMode != 0 {
		a.mode, a.sent = r.Mode, a.sent|journal.SetMode
	}
	if r.Flags&journal.SetOwner != 0 {
		if r.UID != keepID {
			a.uid = r.UID
		}
		if r.GID != keepID {
			a.gid = r.GID
		}
		if r.UID != keepID && r.GID != keepID {
			a.sent |= journal.SetOwner
		}
	}
}

// matches reports whether the replica was sent the mode and owner st has.
func (a *attrs) matches(st *unix.Stat_t, symlink bool) bool {
	if a.sent&journal.SetOwner == 0 || a.uid != st.Uid || a.gid != st.Gid {
		return false
	}
	return symlink || a.sent&journal.SetMode != 0 && a.mode == st.Mode&07777
}

// emitAttrs emits r, which sets n's mode or owner, and notes what it sent.
func (p *processor) emitAttrs(n *node, r journal.Record) {
	p.emit(r)
	n.attr.note(&r)
}

// attrs sends all of n's attributes as st has them.
func (p *processor) attrs(n *node, rel string, st *unix.Stat_t) {
	p.emitAttrs(n, journal.Record{
		Op: journal.OpSetattr, Path: rel,
		Flags: journal.SetMode | journal.SetOwner | journal.SetAtime | journal.SetMtime,
		Mode:  st.Mode & 07777, UID: st.Uid, GID: st.Gid,
		Atime: st.Atim.Nano(), Mtime: st.Mtim.Nano(),
	})
}

// owner sends only the owner st has, as a symlink's attributes.
func (p *processor) owner(n *node, rel string, st *unix.Stat_t) {
	p.emitAttrs(n, journal.Record{Op: journal.OpSetattr, Path: rel, Flags: journal.SetOwner, UID: st.Uid, GID: st.Gid})
}
