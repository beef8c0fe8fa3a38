package master

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"time"

	"github.com/writecap/writecap/monitor"
	"github.com/writecap/writecap/resync"
	"github.com/writecap/writecap/stream"
)

// A request is work an operator asked of one replica's next session: a
// full copy against its manifest (resync), or a comparison with it
// (verify). The session it has is ended so that the next one does it.
type request struct {
	verify bool
	done   chan requestResult
}

type requestResult struct {
	From   uint64         `json:"from,omitempty"`   // resync: the copy's first seq
	To     uint64         `json:"to,omitempty"`     // resync: its last, which the replica has applied
	Report *resync.Report `json:"report,omitempty"` // verify
	err    error
}

// markWait bounds how long a verify waits for capture to hand on every
// change made while the master hashed its tree.
const markWait = 10 * time.Second

// actions are the operator's requests the control socket serves.
func (m *Master) actions() map[string]monitor.Action {
	return map[string]monitor.Action{
		"resync": func(ctx context.Context, q url.Values) (any, error) { return m.request(ctx, q.Get("replica"), false) },
		"verify": func(ctx context.Context, q url.Values) (any, error) {
			var at uint64
			if v := q.Get("at"); v != "" {
				var err error
				if at, err = strconv.ParseUint(v, 10, 64); err != nil {
					return nil, fmt.Errorf("master: verify at %q: not a sequence number", v)
				}
			}
			return m.verifyAt(ctx, q.Get("replica"), at)
		},
	}
}

// verifyAt verifies a replica once it has applied seq at: the comparison
// is made at the seq it has then applied, at or after at.
func (m *Master) verifyAt(ctx context.Context, name string, at uint64) (*requestResult, error) {
	f, err := m.feedNamed(name)
	if err != nil {
		return nil, err
	}
	if at > m.q.spool.Last() {
		return nil, fmt.Errorf("master: verify at #%d: the master has captured up to #%d", at, m.q.spool.Last())
	}
	if !f.waitApplied(at, ctx.Done()) {
		return nil, ctx.Err()
	}
	return m.request(ctx, name, true)
}

// request runs a request on the replica named (by address or identity; ""
// when there is only one) and waits for its result.
func (m *Master) request(ctx context.Context, name string, verify bool) (*requestResult, error) {
	f, err := m.feedNamed(name)
	if err != nil {
		return nil, err
	}
	r := &request{verify: verify, done: make(chan requestResult, 1)}
	if !f.req.CompareAndSwap(nil, r) {
		return nil, fmt.Errorf("master: replica %s already has a request under way", f.r.Addr)
	}
	if !f.sender.Restart() {
		m.log.Info("replica away: the request waits for its next session", "replica", f.r.Addr)
	}
	var res requestResult
	select {
	case res = <-r.done:
	case <-ctx.Done():
		f.req.CompareAndSwap(r, nil)
		return nil, ctx.Err()
	}
	if res.err != nil {
		return nil, res.err
	}
	if verify {
		return &res, nil
	}
	// Capture began the copy before From; a mark taken now is answered
	// once the copy is whole in the spool.
	to, _, err := m.source.Mark(ctx)
	if err != nil {
		return nil, err
	}
	res.To = m.q.streamSeq(to)
	if !f.waitApplied(res.To, ctx.Done()) {
		return nil, fmt.Errorf("master: replica %s had not applied the copy (#%d to #%d): %w", f.r.Addr, res.From, res.To, ctx.Err())
	}
	m.log.Info("replica resynchronised on request", "replica", f.r.Addr, "from", res.From, "to", res.To)
	return &res, nil
}

func (m *Master) feedNamed(name string) (*feed, error) {
	var found []*feed
	for _, f := range m.feeds {
		if name == "" || f.r.Addr == name || f.r.Name == name {
			found = append(found, f)
		}
	}
	if len(found) != 1 {
		return nil, fmt.Errorf("master: %d replicas match %q: name one by address or identity", len(found), name)
	}
	return found[0], nil
}

// verify compares the master's tree with what the replica holds once it
// has applied all it holds: only hashes cross. What the
// master's records after that changed is left out, up to a mark taken after
// the master's tree was hashed, so every change the hashes saw is known.
func (f *feed) verify(ctx context.Context, w *stream.Welcome, p stream.Peer) (*resync.Report, error) {
	theirs, err := manifestOf(ctx, p, f.m.cfg.BlockSize)
	if err != nil {
		return nil, err
	}
	ours, err := resync.BuildManifest(ctx, f.m.cfg.Source, f.m.cfg.BlockSize, nil, nil)
	if err != nil {
		return nil, err
	}
	var (
		r    *resync.Report
		last uint64
	)
	// A difference that a record after the mark touches is a repair on its
	// way (capture puts some changes right a little later): a second mark
	// tells those from differences that stay.
	for range 2 {
		mctx, cancel := context.WithTimeout(ctx, markWait)
		to, exact, err := f.m.source.Mark(mctx)
		cancel()
		if err != nil {
			return nil, err
		}
		if !exact {
			return nil, errors.New("master: capture did not catch up with the changes made while hashing; verify again")
		}
		if r != nil && to == last {
			break
		}
		changed, err := f.m.q.changedBetween(ctx, holds(w), to)
		if err != nil {
			return nil, err
		}
		r, last = resync.CompareManifests(ours, theirs, changed), to
		if r.Equal() {
			break
		}
	}
	r.Seq = holds(w)
	f.m.log.Info("verified a replica against the master", "replica", f.r.Addr, "at", r.Seq,
		"differences", len(r.Differences), "left_out_changed_since", r.Skipped, "hash_bytes", r.BytesSent)
	return r, nil
}
