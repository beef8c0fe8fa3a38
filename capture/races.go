package capture

import "time"

// span is an operation's time in the kernel and the bytes it may touch.
type span struct {
	enter, exit uint64
	lo, hi      int64
}

func (a span) overlapsTime(b span) bool { return a.enter <= b.exit && b.enter <= a.exit }

const (
	raceWindow  = uint64(2 * time.Second)
	raceKeepMax = 128
	exitSkew    = uint64(10 * time.Millisecond)
)

// raceTable finds content operations on one inode that were in the kernel
// at the same time and touch the same bytes: their sequence order does not
// tell which landed last, so the range is read back from the master.
type raceTable struct {
	m      map[uint64]*inoSpans
	latest uint64
	swept  uint64 // exit time of the newest span dropped with its inode
	checks int
}

type inoSpans struct {
	spans     []span
	forgotten uint64 // exit time of the newest span dropped
}

func newRaceTable() raceTable { return raceTable{m: map[uint64]*inoSpans{}} }

// check records s and returns the range to repair if it raced. Chunks of one
// write share a span, so only the last one is recorded.
func (r *raceTable) check(ino uint64, s span, record bool) (int64, int64, bool) {
	if s.exit > r.latest {
		r.latest = s.exit
	}
	r.checks++
	if r.checks%4096 == 0 {
		r.sweep()
	}
	e := r.m[ino]
	if e == nil {
		e = &inoSpans{forgotten: r.swept}
		r.m[ino] = e
	}
	lo, hi, race := s.lo, s.hi, false
	if s.enter <= e.forgotten {
		// It overlapped something no longer remembered.
		lo, hi, race = 0, toEOF, true
	}
	// Spans arrive in sequence order, which is exit order up to the skew
	// between CPUs, so the scan stops at the first that ended well before
	// s began.
	for i := len(e.spans) - 1; i >= 0; i-- {
		o := e.spans[i]
		if o.exit+exitSkew < s.enter {
			break
		}
		if o.overlapsTime(s) && o.lo < s.hi && s.lo < o.hi {
			race = true
			lo, hi = min(lo, o.lo), max(hi, o.hi)
		}
	}
	if record {
		if len(e.spans) >= raceKeepMax {
			half := len(e.spans) / 2
			for _, o := range e.spans[:half] {
				e.forgotten = max(e.forgotten, o.exit)
			}
			e.spans = append(e.spans[:0], e.spans[half:]...)
		}
		e.spans = append(e.spans, s)
	}
	return lo, hi, race
}

func (r *raceTable) sweep() {
	for ino, e := range r.m {
		stale := true
		for _, o := range e.spans {
			if o.exit+raceWindow >= r.latest {
				stale = false
				break
			}
		}
		if stale {
			for _, o := range e.spans {
				r.swept = max(r.swept, o.exit)
			}
			r.swept = max(r.swept, e.forgotten)
			delete(r.m, ino)
		}
	}
}

// nsRaces finds namespace and attribute operations on one directory that
// were in the kernel together: their order is not known, so names are
// reconciled with the master and that directory's contents sent again (a
// write routed by a misordered name may have landed in the wrong file).
type nsRaces struct {
	recent []nsOp
}

type nsOp struct {
	span
	dirs []*node
}

const nsKeepMax = 4096

func (n *nsRaces) note(s span, dirs []*node, p *processor) {
	op := nsOp{span: s, dirs: append([]*node(nil), dirs...)}
	race := false
	for i := len(n.recent) - 1; i >= 0; i-- {
		o := n.recent[i]
		if o.exit+exitSkew < s.enter {
			break
		}
		if !o.overlapsTime(s) || !sharesDir(o.dirs, op.dirs) {
			continue
		}
		race = true
		for _, d := range o.dirs {
			p.suspect[d] = true
		}
	}
	n.recent = append(n.recent, op)
	if len(n.recent) > nsKeepMax {
		n.recent = append(n.recent[:0], n.recent[len(n.recent)-nsKeepMax/4:]...)
	}
	if race {
		for _, d := range op.dirs {
			p.suspect[d] = true
		}
		p.s.stats.races.Add(1)
		p.needReconcile("concurrent namespace operations", false)
	}
}

func sharesDir(a, b []*node) bool {
	for _, x := range a {
		for _, y := range b {
			if x == y {
				return true
			}
		}
	}
	return false
}
