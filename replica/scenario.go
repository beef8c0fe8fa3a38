package replica

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/writecap/writecap/journal"
	"github.com/writecap/writecap/monitor"
	"github.com/writecap/writecap/replay"
	"github.com/writecap/writecap/resync"
	"github.com/writecap/writecap/stream"
)

// checkpointEvery is how often applied records are made durable in the root
// and released from the spool: what a crash may have to apply again.
const checkpointEvery = time.Second

// States a scenario reports.
const (
	StateWaiting   = "waiting"   // no master connected
	StateConnected = "connected" // receiving and applying
	StateDiskFull  = "disk full" // applying paused until space returns
	StateStopped   = "stopped"   // applying stopped on a record it refused
)

// scenario is one replicated root: its spool, its applier and its session.
type scenario struct {
	cfg   Scenario
	name  string // this replica's identity
	log   *slog.Logger
	spool *journal.Spool

	// mu serialises sessions' changes: receive, reset, session hand-over.
	mu      sync.Mutex
	gen     uint64 // the current session; older ones are refused
	session bool
	master  string
	dec     journal.Decoder
	enc     *journal.Encoder
	recs    []journal.Record

	received, durable, applied atomic.Uint64
	resets                     atomic.Uint64 // Resets taken, for the syncer
	changed                    chan struct{} // progress moved
	appended                   chan struct{} // the syncer has work

	statusMu  sync.Mutex
	state     string
	lastError string

	applyCancel context.CancelFunc
	applyDone   chan struct{}
	stopErr     error // the last checkpoint's, when applying was stopped
	syncDone    chan struct{}
	stopSync    context.CancelFunc

	stMu sync.Mutex // st is also written by the applier's checkpoints
	st   state

	counts       struct{ sessions, refused, resets, adoptions, diskFull, manifests atomic.Uint64 }
	appliedBytes atomic.Uint64
	rate         monitor.Rate
}

func openScenario(sc Scenario, name string, log *slog.Logger) (*scenario, error) {
	if err := os.MkdirAll(sc.State, 0o700); err != nil {
		return nil, fmt.Errorf("replica: scenario %s state: %w", sc.ID, err)
	}
	if err := os.MkdirAll(sc.Root, 0o755); err != nil {
		return nil, fmt.Errorf("replica: scenario %s root: %w", sc.ID, err)
	}
	st, err := loadState(sc.State)
	if err != nil {
		return nil, err
	}
	log = log.With("scenario", sc.ID)
	if st.settle(sc.Root) {
		log.Info("a name exchange was applied before the crash; not applying it again", "seq", st.Applied)
		if err := st.save(sc.State); err != nil {
			return nil, err
		}
	}
	sp, err := journal.OpenSpool(journal.SpoolOptions{
		Dir: filepath.Join(sc.State, "spool"), MinFree: sc.MinFree, MaxBytes: sc.SpoolMax, Logger: log,
	})
	if err != nil {
		return nil, err
	}
	// The spool can only be behind the state after losing a torn tail:
	// what it lost was applied already.
	if sp.Last() < st.Applied {
		if err := sp.Reset(st.Applied); err != nil {
			sp.Close()
			return nil, err
		}
	}
	s := &scenario{
		cfg: sc, name: name, log: log, spool: sp, st: st,
		enc: journal.NewEncoder(journal.EncoderOptions{}),
		// Receive is done with a batch's records before it returns.
		dec:     journal.Decoder{Alias: true},
		changed: make(chan struct{}, 1), appended: make(chan struct{}, 1),
		state: StateWaiting,
	}
	s.received.Store(sp.Last())
	s.durable.Store(sp.Last())
	s.applied.Store(st.Applied)
	ctx, cancel := context.WithCancel(context.Background())
	s.stopSync, s.syncDone = cancel, make(chan struct{})
	go s.syncLoop(ctx)
	s.startApply()
	log.Info("scenario open", "root", sc.Root, "epoch", st.Epoch, "applied", st.Applied, "held", sp.Last())
	return s, nil
}

func (s *scenario) close() error {
	stopErr := s.stopApply()
	s.stopSync()
	<-s.syncDone
	return errors.Join(stopErr, s.spool.Close())
}

func (s *scenario) signal(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

func (s *scenario) setState(state string, err error) {
	s.statusMu.Lock()
	defer s.statusMu.Unlock()
	s.state = state
	if err != nil {
		s.lastError = err.Error()
	}
}

func (s *scenario) setError(err error) {
	s.statusMu.Lock()
	defer s.statusMu.Unlock()
	s.lastError = err.Error()
}

// accept starts a session for a master's Hello. A newer session replaces an
// older one, whose connection may be dead without it knowing yet.
func (s *scenario) accept(h *stream.Hello, peer string) (stream.Target, *stream.Welcome, error) {
	if s.cfg.Master != "" && peer != s.cfg.Master {
		s.counts.refused.Add(1)
		return nil, nil, fmt.Errorf("replica: scenario %s takes master %q, not %q", s.cfg.ID, s.cfg.Master, peer)
	}
	if h.Replica != "" && s.name != "" && h.Replica != s.name {
		s.counts.refused.Add(1)
		return nil, nil, fmt.Errorf("replica: this is replica %q, not %q", s.name, h.Replica)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.spool.Sync(); err != nil {
		return nil, nil, err
	}
	s.durable.Store(s.spool.Last())
	s.gen++
	s.session, s.master = true, peer
	s.counts.sessions.Add(1)
	s.statusMu.Lock()
	if s.state == StateWaiting {
		s.state = StateConnected
	}
	s.statusMu.Unlock()
	epoch := s.epoch()
	s.log.Info("master connected", "master", peer, "master_epoch", h.Epoch, "root", h.Root,
		"epoch", epoch, "durable", s.durable.Load(), "applied", s.applied.Load())
	w := &stream.Welcome{
		Scenario: s.cfg.ID, Replica: s.name, Epoch: epoch,
		Received: s.received.Load(), Applied: s.applied.Load(), Durable: s.durable.Load(),
	}
	return &session{s: s, gen: s.gen}, w, nil
}

// session is one master connection's view of the scenario.
type session struct {
	s   *scenario
	gen uint64
}

var _ stream.Target = (*session)(nil)

var errSuperseded = errors.New("replica: a newer session from the master replaced this one")

func (t *session) Reset(r *stream.Reset) error {
	s := t.s
	if r.From == 0 {
		return fmt.Errorf("replica: reset to sequence number 0: %w", stream.ErrCorrupt)
	}
	if r.Keep {
		// A new master repairs what this replica has: apply all of it
		// first, since the repair is relative to it. Not under s.mu: that
		// may take long, and a newer session must be able to start.
		s.log.Info("a new master resumes this replica: applying what it holds, then the repair",
			"epoch", r.Epoch, "from", r.From, "old_epoch", s.epoch(), "held", s.received.Load())
		if err := s.drainApply(t.gen); err != nil {
			return err
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.gen != t.gen {
		return errSuperseded
	}
	s.resets.Add(1)
	// What was applied must be durable in the root before the spool that
	// holds it goes.
	if err := s.stopApply(); err != nil {
		s.startApply()
		return fmt.Errorf("replica: before the reset: %w", err)
	}
	if r.Keep {
		s.counts.adoptions.Add(1)
	} else {
		s.log.Warn("the master rebuilds this replica from a full copy; clearing the root",
			"epoch", r.Epoch, "from", r.From, "old_epoch", s.epoch(), "old_applied", s.applied.Load())
		s.counts.resets.Add(1)
		// Nothing may resume this data once clearing starts: epoch 0 is
		// nobody's.
		if err := s.setSaved(state{}); err != nil {
			return err
		}
		if err := replay.Clear(s.cfg.Root); err != nil {
			return err
		}
	}
	if err := s.spool.Reset(r.From - 1); err != nil {
		return err
	}
	if err := s.setSaved(state{Epoch: r.Epoch, Applied: r.From - 1}); err != nil {
		return err
	}
	s.received.Store(r.From - 1)
	s.durable.Store(r.From - 1)
	s.applied.Store(r.From - 1)
	s.setState(StateConnected, nil)
	s.startApply()
	s.signal(s.changed)
	return nil
}

// Manifest answers a master that cannot resume this replica and would
// rather send what differs from what it holds than everything: apply all
// held first, since what follows is relative to it, then describe the root
// (or the paths asked) with block hashes.
func (t *session) Manifest(ctx context.Context, req *stream.ManifestRequest, send func(*stream.ManifestPart) error) error {
	s := t.s
	if err := s.drainApply(t.gen); err != nil {
		return err
	}
	var (
		m   *resync.Manifest
		err error
	)
	if req.Paths != nil {
		m, err = resync.BuildManifestOf(ctx, s.cfg.Root, req.BlockSize, req.Paths)
	} else if req.BlockSize <= 0 || req.BlockSize > resync.MaxBlockSize {
		err = fmt.Errorf("replica: manifest with blocks of %d bytes: %w", req.BlockSize, stream.ErrCorrupt)
	} else {
		m, err = resync.BuildManifest(ctx, s.cfg.Root, req.BlockSize, nil, nil)
	}
	if err != nil {
		return err
	}
	s.counts.manifests.Add(1)
	s.log.Info("sending the master what this replica holds, so that it sends only what differs",
		"entries", len(m.Entries), "block_size", m.BlockSize, "paths_asked", len(req.Paths))
	return m.EncodeParts(func(b []byte, last bool) error {
		return send(&stream.ManifestPart{Data: b, Last: last})
	})
}

// setSaved replaces the state, durably, then in memory.
func (s *scenario) setSaved(st state) error {
	s.stMu.Lock()
	defer s.stMu.Unlock()
	return s.update(func(cur *state) { *cur = st })
}

// Receive checks a batch whole before any of it is stored: a corrupt batch,
// a gap or a record the applier would refuse ends the session and leaves the
// replica as it was.
func (t *session) Receive(b []byte) error {
	s := t.s
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.gen != t.gen {
		return errSuperseded
	}
	recs, n, err := s.dec.Decode(b, s.recs[:0])
	s.recs = recs[:0]
	if err != nil {
		return fmt.Errorf("replica: refusing batch: %w", err)
	}
	if n != len(b) {
		return fmt.Errorf("replica: refusing batch: %d bytes after it in the frame: %w", len(b)-n, stream.ErrCorrupt)
	}
	first, last, held := recs[0].Seq, recs[len(recs)-1].Seq, s.spool.Last()
	switch {
	case last <= held:
		return nil // sent again after a reconnect: already held
	case first > held+1:
		return fmt.Errorf("replica: refusing batch #%d-#%d: this replica holds up to #%d: %w", first, last, held, stream.ErrCorrupt)
	}
	for i := range recs {
		if err := replay.Check(&recs[i]); err != nil {
			return fmt.Errorf("replica: refusing batch #%d-#%d: %w", first, last, err)
		}
	}
	if first <= held {
		if b, err = s.enc.AppendBatch(nil, recs[held+1-first:]); err != nil {
			return err
		}
	}
	// The spool keeps no reference to b: with no memory tier every batch
	// is written to a segment before Append returns.
	if err := s.spool.AppendChecked(b); err != nil {
		s.setError(err)
		return fmt.Errorf("replica: store batch #%d-#%d: %w", first, last, err)
	}
	s.received.Store(last)
	s.signal(s.appended)
	s.signal(s.changed)
	return nil
}

func (t *session) Progress() stream.Ack {
	s := t.s
	return stream.Ack{Received: s.received.Load(), Applied: s.applied.Load(), Durable: s.durable.Load(), Epoch: s.epoch()}
}

func (t *session) Changed() <-chan struct{} { return t.s.changed }

func (t *session) End(err error) {
	s := t.s
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.gen != t.gen {
		return
	}
	s.session = false
	s.statusMu.Lock()
	if s.state == StateConnected {
		s.state = StateWaiting
	}
	if err != nil {
		s.lastError = err.Error()
	}
	s.statusMu.Unlock()
}

// drainApply waits until everything received is applied, applying stops,
// or a newer session replaces session gen.
func (s *scenario) drainApply(gen uint64) error {
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	for s.applied.Load() < s.received.Load() {
		s.mu.Lock()
		superseded, done := s.gen != gen, s.applyDone
		s.mu.Unlock()
		if superseded {
			return errSuperseded
		}
		select {
		case <-done:
			s.statusMu.Lock()
			err := s.lastError
			s.statusMu.Unlock()
			return fmt.Errorf("replica: applying stopped before the new master's repair: %s", err)
		case <-t.C:
		}
	}
	return nil
}

// syncLoop makes what was received durable, a group at a time, so that
// receiving never waits for the disk of the replicated data.
func (s *scenario) syncLoop(ctx context.Context) {
	defer close(s.syncDone)
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.appended:
		}
		gen := s.resets.Load()
		last := s.spool.Last()
		if err := s.spool.Sync(); err != nil {
			s.log.Error("replica: spool sync failed; the master keeps what is not durable here", "err", err)
			s.setError(err)
			continue
		}
		s.mu.Lock()
		// A Reset meanwhile made last a seq of another epoch.
		if gen == s.resets.Load() && last > s.durable.Load() {
			s.durable.Store(last)
			s.signal(s.changed)
		}
		s.mu.Unlock()
	}
}

func (s *scenario) startApply() {
	ctx, cancel := context.WithCancel(context.Background())
	s.applyCancel, s.applyDone = cancel, make(chan struct{})
	go s.applyLoop(ctx, s.applyDone)
}

// stopApply stops applying and returns what the last checkpoint met.
func (s *scenario) stopApply() error {
	s.applyCancel()
	<-s.applyDone
	return s.stopErr
}

// applyLoop applies the spool to the root in order. A full disk pauses it
// until space returns; a record the applier refuses stops it.
func (s *scenario) applyLoop(ctx context.Context, done chan struct{}) {
	defer close(done)
	for {
		err := s.applyFrom(ctx)
		if ctx.Err() != nil {
			s.stopErr = err
			return
		}
		if errors.Is(err, unix.ENOSPC) || errors.Is(err, unix.EDQUOT) {
			s.statusMu.Lock()
			if s.state != StateDiskFull {
				s.counts.diskFull.Add(1)
				s.log.Error("replica: disk full; applying paused, received changes kept in the spool", "err", err)
			}
			s.state, s.lastError = StateDiskFull, err.Error()
			s.statusMu.Unlock()
			t := time.NewTimer(checkpointEvery)
			select {
			case <-ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
			continue
		}
		s.log.Error("replica: applying stopped; the replica keeps what it has", "err", err, "applied", s.applied.Load())
		s.setState(StateStopped, err)
		return
	}
}

func (s *scenario) applyFrom(ctx context.Context) error {
	// Barriers are durable in the spool already; checkpoints sync the root
	// before the spool lets them go.
	app, err := replay.Open(s.cfg.Root, replay.Options{Logger: s.log, DeferBarriers: true})
	if err != nil {
		return err
	}
	defer app.Close()
	cur := s.spool.Cursor(s.applied.Load() + 1)
	defer cur.Close()
	var (
		dec  = journal.Decoder{Alias: true} // records are applied before the next batch
		recs []journal.Record
		next = time.Now().Add(checkpointEvery)
	)
	for {
		nctx, cancel := context.WithDeadline(ctx, next)
		b, _, _, err := cur.Next(nctx)
		cancel()
		switch {
		case ctx.Err() != nil:
			return s.checkpoint(app)
		case errors.Is(err, context.DeadlineExceeded):
			if err := s.checkpoint(app); err != nil {
				return err
			}
			next = time.Now().Add(checkpointEvery)
			continue
		case err != nil:
			return err
		}
		if recs, _, err = dec.DecodeChecked(b, recs[:0]); err != nil {
			return fmt.Errorf("replica: spool: %w", err)
		}
		for i := range recs {
			if recs[i].Seq <= s.applied.Load() {
				continue
			}
			r := &recs[i]
			exchange := r.Op == journal.OpRename && r.Flags&unix.RENAME_EXCHANGE != 0
			if exchange {
				if err := s.beforeExchange(app, r); err != nil {
					return err
				}
			}
			if err := app.Apply(r); err != nil {
				return err
			}
			s.applied.Store(r.Seq)
			if exchange {
				// Durable at once, so that the marker never has to judge
				// a state later records changed.
				if err := s.checkpoint(app); err != nil {
					return err
				}
			}
		}
		s.appliedBytes.Add(uint64(len(b)))
		s.statusMu.Lock()
		if s.state == StateDiskFull {
			s.state = StateConnected
			s.log.Info("replica: space returned; applying again")
		}
		s.statusMu.Unlock()
		s.signal(s.changed)
		if time.Now().After(next) {
			if err := s.checkpoint(app); err != nil {
				return err
			}
			next = time.Now().Add(checkpointEvery)
		}
	}
}

// checkpoint makes the root durable up to what was applied, records that,
// and lets the spool drop it.
func (s *scenario) checkpoint(app *replay.Applier) error {
	applied := s.applied.Load()
	s.stMu.Lock()
	defer s.stMu.Unlock()
	if applied == s.st.Applied {
		return nil
	}
	if err := app.Sync(); err != nil {
		return err
	}
	if err := s.update(func(st *state) { st.Applied = applied }); err != nil {
		return err
	}
	return s.spool.Release(applied)
}

// update changes the state durably, then in memory; stMu must be held.
func (s *scenario) update(fn func(*state)) error {
	st := s.st
	fn(&st)
	if err := st.save(s.cfg.State); err != nil {
		return err
	}
	s.st = st
	return nil
}

// beforeExchange makes everything before r durable and records what r's
// first name will hold once r is applied, so that a crash never applies the
// swap twice (see state.settle).
func (s *scenario) beforeExchange(app *replay.Applier, r *journal.Record) error {
	if err := s.checkpoint(app); err != nil {
		return err
	}
	var fi unix.Stat_t
	if unix.Lstat(filepath.Join(s.cfg.Root, r.Path2), &fi) != nil {
		fi.Ino = 0 // nothing to swap with: applying again is harmless
	}
	s.stMu.Lock()
	defer s.stMu.Unlock()
	return s.update(func(st *state) { st.Exchange = &exchange{Seq: r.Seq, Path: r.Path, Ino: fi.Ino} })
}

func (s *scenario) epoch() uint64 {
	s.stMu.Lock()
	defer s.stMu.Unlock()
	return s.st.Epoch
}

func (s *scenario) status() monitor.Scenario {
	s.statusMu.Lock()
	st := monitor.Scenario{ID: s.cfg.ID, Root: s.cfg.Root, State: s.state, LastError: s.lastError}
	s.statusMu.Unlock()
	st.Epoch = s.epoch()
	st.Received, st.Applied, st.Durable = s.received.Load(), s.applied.Load(), s.durable.Load()
	st.SpoolBytes = s.spool.Bytes()
	st.Throughput = s.rate.PerSecond(s.appliedBytes.Load())
	return st
}
