package master

import (
	"context"
	"sync"
	"time"

	"github.com/writecap/writecap/resync"
	"github.com/writecap/writecap/stream"
)

// heldAsk carries, after a restart, the files capture's repair would send
// whole to the earlier master's replicas when they connect, and what they
// hold of them back: the repair then sends only the blocks that differ, as
// DRBD's activity log lets it resync only the extents that were hot. The
// repair is one stream every such replica takes, so it is sent against
// what they all hold (resync.Common); a replica whose manifest it was not
// made against starts over from a copy against its own instead.
type heldAsk struct {
	replicas int           // feeds that may answer
	posted   chan struct{} // closed when paths is set
	decided  chan struct{} // closed when capture stops waiting
	answered chan struct{} // a token when answers or began changed

	mu      sync.Mutex
	paths   []string
	began   map[int]bool // feeds making their manifest: waited for past ResumeWait
	answers map[int]heldAnswer
	used    map[int]bool // feeds the repair is sent against; nil: sent whole, for any
}

// heldAnswer is one feed's answer: a nil m with a nil err is a replica that
// does not take the repair (it starts over from a copy).
type heldAnswer struct {
	m   *resync.Manifest
	err error
}

func newHeldAsk(replicas int) *heldAsk {
	return &heldAsk{
		replicas: replicas, posted: make(chan struct{}), decided: make(chan struct{}),
		answered: make(chan struct{}, 1),
		began:    map[int]bool{}, answers: map[int]heldAnswer{},
	}
}

// resumeHeld is capture's Resume.Held: it waits ResumeWait for the
// replicas to connect, and then for the manifests of paths of those that
// began one.
func (m *Master) resumeHeld(paths []string) *resync.Manifest {
	a := m.q.ask
	defer close(a.decided)
	if len(paths) == 0 {
		return nil
	}
	held, answered, err := a.decide(paths, time.After(m.cfg.ResumeWait))
	if err != nil {
		m.log.Warn("the repair of the earlier master's changes sends the files whole", "files", len(paths), "err", err)
	}
	if answered < a.replicas {
		m.log.Warn("not every replica connected in time: one that connects later starts over from a copy against what it holds",
			"answered", answered, "replicas", a.replicas, "waited", m.cfg.ResumeWait)
	}
	return held
}

// decide posts paths, waits for the answers (past deadline, only for those
// begun) and returns what the replicas that take the repair all hold, nil
// to send the files whole, and how many replicas answered.
func (a *heldAsk) decide(paths []string, deadline <-chan time.Time) (*resync.Manifest, int, error) {
	a.mu.Lock()
	a.paths = paths
	a.mu.Unlock()
	close(a.posted)
	late := false
	for !a.complete(late) {
		select {
		case <-a.answered:
		case <-deadline:
			late, deadline = true, nil
		}
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	var (
		ms   []*resync.Manifest
		used = map[int]bool{}
	)
	for id, ans := range a.answers {
		if ans.err != nil {
			return nil, len(a.answers), ans.err
		}
		if ans.m != nil {
			ms = append(ms, ans.m)
			used[id] = true
		}
	}
	if len(ms) == 0 {
		return nil, len(a.answers), nil
	}
	held, err := resync.Common(ms...)
	if err != nil {
		return nil, len(a.answers), err
	}
	a.used = used
	return held, len(a.answers), nil
}

// complete reports whether every feed answered or, once late, every feed
// that began an answer did.
func (a *heldAsk) complete(late bool) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(a.answers) == a.replicas {
		return true
	}
	if !late {
		return false
	}
	for id := range a.began {
		if _, ok := a.answers[id]; !ok {
			return false
		}
	}
	return true
}

func (a *heldAsk) answer(id int, ans heldAnswer) {
	a.mu.Lock()
	a.answers[id] = ans
	a.mu.Unlock()
	a.wake()
}

// begin notes that feed id's replica is making its manifest, which capture
// waits for even past ResumeWait, and returns the paths it is of.
func (a *heldAsk) begin(id int) []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.began[id] = true
	return a.paths
}

// abandon is begin undone: the session ended before its answer.
func (a *heldAsk) abandon(id int) {
	a.mu.Lock()
	delete(a.began, id)
	a.mu.Unlock()
	a.wake()
}

func (a *heldAsk) wake() {
	select {
	case a.answered <- struct{}{}:
	default: // a token is already waiting: complete reads the maps
	}
}

// pass answers for a feed that does not take the repair, unless capture has
// decided already.
func (a *heldAsk) pass(id int) {
	select {
	case <-a.decided:
	default:
		a.answer(id, heldAnswer{})
	}
}

// takes reports, once decided, whether feed id may take the repair.
func (a *heldAsk) takes(id int) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.used == nil || a.used[id]
}

// describe gives capture's waiting repair the manifest of the files it
// names from feed id's replica, and reports, once capture has decided,
// whether that replica takes the repair: a replica the repair was not made
// against must start over from a copy instead.
func (q *queue) describe(ctx context.Context, id int, peer stream.Peer) (bool, error) {
	a := q.ask
	select {
	case <-a.decided:
		return a.takes(id), nil
	default:
	}
	select {
	case <-a.posted:
		paths := a.begin(id)
		m, err := manifestOfPaths(ctx, peer, q.m.cfg.BlockSize, paths)
		if ctx.Err() != nil {
			a.abandon(id)
			return false, ctx.Err()
		}
		a.answer(id, heldAnswer{m: m, err: err})
	case <-a.decided:
	case <-ctx.Done():
		return false, ctx.Err()
	}
	select {
	case <-a.decided:
		return a.takes(id), nil
	case <-ctx.Done():
		return false, ctx.Err()
	}
}
