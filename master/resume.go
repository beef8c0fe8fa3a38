package master

import (
	"context"
	"time"

	"github.com/writecap/writecap/resync"
	"github.com/writecap/writecap/stream"
)

// heldAsk carries, after a restart, the files capture's repair would send
// whole to the earlier master's replica when it connects, and what it holds
// of them back: the repair then sends only the blocks that differ, as
// DRBD's activity log lets it resync only the extents that were hot.
type heldAsk struct {
	paths chan []string         // capture to the replica's session
	taken chan struct{}         // closed when a session took the paths
	held  chan *resync.Manifest // its answer; nil when it has none
	done  chan struct{}         // closed when capture stops waiting
}

func newHeldAsk() *heldAsk {
	return &heldAsk{paths: make(chan []string, 1), taken: make(chan struct{}), held: make(chan *resync.Manifest, 1), done: make(chan struct{})}
}

// resumeHeld is capture's Resume.Held: it waits ResumeWait for the replica
// to connect, then for its manifest of paths.
func (m *Master) resumeHeld(paths []string) *resync.Manifest {
	a := m.q.ask
	defer close(a.done)
	if len(paths) == 0 {
		return nil
	}
	a.paths <- paths
	select {
	case <-a.taken:
	case <-time.After(m.cfg.ResumeWait):
		m.log.Warn("the earlier master's replica did not connect in time: the repair sends the files it changed whole",
			"files", len(paths), "waited", m.cfg.ResumeWait)
		return nil
	}
	return <-a.held
}

// describe gives capture's waiting repair the replica's manifest of the
// files it names; a replica that cannot give one leaves them sent whole.
func (q *queue) describe(ctx context.Context, a *heldAsk, peer stream.Peer) {
	var paths []string
	select {
	case paths = <-a.paths:
	case <-a.done:
		return
	case <-ctx.Done():
		return
	}
	close(a.taken)
	m, err := manifestOfPaths(ctx, peer, q.m.cfg.BlockSize, paths)
	if err != nil {
		q.m.log.Warn("the repair of the earlier master's changes sends the files whole", "files", len(paths), "err", err)
		m = nil
	}
	a.held <- m
}
