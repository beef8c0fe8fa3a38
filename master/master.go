// Package master runs the master agent: it captures a protected tree,
// queues the journal in a spool and streams it to every replica of the
// scenario, each from where it stands.
package master

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/time/rate"

	"github.com/writecap/writecap/capture"
	"github.com/writecap/writecap/journal"
	"github.com/writecap/writecap/monitor"
	"github.com/writecap/writecap/resync"
	"github.com/writecap/writecap/stream"
)

// Replica is one replica of the scenario.
type Replica struct {
	Addr string // host:port
	// Name is the identity its certificate must carry; "" accepts any
	// certificate of the scenario's CA.
	Name string
}

// Config is what `writecap master` needs.
type Config struct {
	Scenario string
	Name     string // this master's identity (its certificate's common name)
	Source   string
	State    string // spool directory; outside Source
	Replicas []Replica
	// TLS returns the client configuration that checks a replica's name.
	TLS func(serverName string) (*tls.Config, error)

	Compress  bool
	Bandwidth int64 // bytes per second to each replica; 0: unlimited
	SpoolMem  int64 // spool bytes kept in memory before disk (default 256 MiB)
	SpoolMax  int64 // spool bytes in all; 0: no limit
	MinFree   int64 // bytes the spool leaves free on its file system
	// DrainTimeout bounds how long a stopping master waits for replicas to
	// apply everything captured (default 1 minute).
	DrainTimeout time.Duration
	// ResumeSlack reaches back before an earlier master's last recorded
	// change when looking for what changed without capture (default 30 s):
	// changes it had not yet read from the kernel when it died are older
	// than its last record.
	ResumeSlack time.Duration
	// ResumeWait bounds how long a restarted master waits for its replicas
	// to connect and say what they hold of the files its repair would send
	// whole (default 10 s): the repair goes against what those that did
	// all hold, and one that connects later starts over from a copy
	// against what it holds. Capture is held meanwhile, and its kernel
	// losses are repaired after.
	ResumeWait time.Duration
	// BlockSize is the block of the comparison with what a replica that
	// cannot resume holds (resync.DefaultBlockSize when 0).
	BlockSize int
	Stream    stream.SenderConfig // timeouts and window; Addr, TLS, Hello and Feed are filled in
	Capture   capture.Config      // Root is taken from Source
	Metrics   string              // /metrics and /status address; "" none
	Logger    *slog.Logger
	Ready     func() // capture is attached
}

// Master is a running master agent.
type Master struct {
	cfg    Config
	log    *slog.Logger
	epoch  uint64
	source *capture.Source
	q      *queue
	feeds  []*feed
	rate   monitor.Rate
	al     *activity         // written by the capture goroutine only
	prior  map[uint64]uint64 // earlier epochs this master can repair: durable seq needed
	snapAt atomic.Int64      // when directories were last asked for (ns)
}

// RunAll runs a master per scenario and calls ready once all capture.
func RunAll(ctx context.Context, cfgs []Config, ready func()) error {
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		pending = len(cfgs)
		errs    = make([]error, len(cfgs))
	)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	for i, c := range cfgs {
		c.Ready = func() {
			mu.Lock()
			defer mu.Unlock()
			if pending--; pending == 0 && ready != nil {
				ready()
			}
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if errs[i] = Run(ctx, c); errs[i] != nil {
				cancel() // one scenario failing stops the agent: it must be seen
			}
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// Run captures and streams until ctx ends, then drains: everything captured
// reaches every replica that is connected, within DrainTimeout.
func Run(ctx context.Context, cfg Config) error {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.SpoolMem == 0 {
		cfg.SpoolMem = 256 << 20
	}
	if cfg.DrainTimeout == 0 {
		cfg.DrainTimeout = time.Minute
	}
	if cfg.ResumeSlack == 0 {
		cfg.ResumeSlack = 30 * time.Second
	}
	if cfg.ResumeWait == 0 {
		cfg.ResumeWait = 10 * time.Second
	}
	if cfg.BlockSize <= 0 {
		cfg.BlockSize = resync.DefaultBlockSize
	}
	if len(cfg.Replicas) == 0 {
		return errors.New("master: no replica to stream to")
	}
	if err := checkDirs(cfg.Source, cfg.State); err != nil {
		return err
	}
	m := &Master{cfg: cfg, log: cfg.Logger.With("scenario", cfg.Scenario), epoch: uint64(time.Now().UnixNano())}
	sp, err := journal.OpenSpool(journal.SpoolOptions{
		Dir: filepath.Join(cfg.State, "spool"), MemLimit: cfg.SpoolMem, MaxBytes: cfg.SpoolMax,
		MinFree: cfg.MinFree, Logger: m.log,
	})
	if err != nil {
		return err
	}
	defer sp.Close()
	// Seqs belong to one capture: a new epoch starts from an empty spool.
	if err := sp.Reset(0); err != nil {
		return err
	}
	m.q = &queue{m: m, spool: sp, enc: journal.NewEncoder(journal.EncoderOptions{Compress: cfg.Compress}), rebuilt: make(chan struct{}), released: make(chan struct{}), copying: make(chan struct{}, 1),
		full: func(base *resync.Manifest) { m.source.Resync(base) }}

	cc := cfg.Capture
	cc.Root = cfg.Source
	cc.Logger = m.log
	// An earlier master's activity record turns the first copy into a
	// repair for the replicas it served.
	prior, err := readActivity(cfg.State, m.log)
	if err != nil {
		return err
	}
	// Replicas are copied when they connect, each against what it holds:
	// a copy made now might suit none of them.
	cc.LearnOnly = true
	if prior != nil {
		m.prior = prior.resumable
		cc.Resume = &capture.Resume{Changes: prior.changes, Since: prior.last.Add(-cfg.ResumeSlack), Dirs: prior.dirs}
		m.q.ask = newHeldAsk(len(cfg.Replicas))
		cc.Resume.Held = m.resumeHeld
		m.log.Info("found an earlier master's activity record: its replicas are repaired, not rebuilt",
			"epochs", len(prior.resumable), "paths", prior.changes.Len(), "last_recorded", prior.last)
	}
	if m.al, err = newActivity(cfg.State, m.epoch, prior, m.log); err != nil {
		return err
	}
	defer m.al.close()
	if m.source, err = capture.New(cc); err != nil {
		return err
	}
	defer m.source.Close()
	for i, r := range cfg.Replicas {
		f, err := m.newFeed(i, r)
		if err != nil {
			return err
		}
		m.feeds = append(m.feeds, f)
	}
	if cfg.Metrics != "" {
		reg := prometheus.NewRegistry()
		reg.MustRegister(&collector{m: m})
		addr, err := monitor.Serve(ctx, cfg.Metrics, reg, m.report, m.log)
		if err != nil {
			return err
		}
		m.log.Info("metrics and status", "addr", addr.String())
	}
	// Replication goes on without it: only the operator's requests need it.
	sock := filepath.Join(cfg.State, monitor.ControlSocket)
	if err := monitor.ServeControl(ctx, sock, m.actions(), m.log); err != nil {
		m.log.Warn("no control socket: writecap sync and verify --master cannot reach this scenario", "err", err)
	} else {
		m.log.Info("control socket", "path", sock)
	}
	if cfg.Ready != nil {
		cfg.Ready()
	}

	sendCtx, stopSend := context.WithCancel(context.Background())
	defer stopSend()
	var wg sync.WaitGroup
	for _, f := range m.feeds {
		wg.Add(1)
		go func() {
			defer wg.Done()
			f.sender.Run(sendCtx)
		}()
	}
	m.log.Info("master capturing", "source", m.source.Root(), "epoch", m.epoch, "replicas", len(m.feeds))
	capCtx, stopCapture := context.WithCancel(context.Background())
	defer stopCapture()
	// Stopping takes at most DrainTimeout: the repair of changes the spool
	// could not keep, then the drain, share it.
	var stopBy time.Time
	stopping := make(chan struct{})
	go func() {
		<-ctx.Done()
		stopBy = time.Now().Add(m.cfg.DrainTimeout)
		close(stopping)
		m.repairBeforeStop(stopBy)
		stopCapture()
	}()
	m.source.SnapshotDirs()
	capErr := m.source.Run(capCtx, m.q)
	if capErr == nil {
		<-stopping
		m.drain(stopBy)
		m.settleActivity()
	}
	stopSend()
	wg.Wait()
	st := m.source.Stats()
	qc := m.q.counts()
	m.log.Info("master stopped", "records", st.Records, "lost_in_kernel", st.Lost, "repairs", st.Dirty,
		"spool_overflows", qc.overflows, "dropped_while_overflowing", qc.dropped, "overflow_repairs", qc.repairs,
		"replicas_evicted", qc.evicted, "last", sp.Last())
	return capErr
}

// repairBeforeStop sends the repair of changes the spool could not keep
// while capture still runs, so that a clean stop leaves the replicas
// complete; without a replica the activity record keeps them for the next
// master.
func (m *Master) repairBeforeStop(deadline time.Time) {
	for time.Now().Before(deadline) {
		m.q.mu.Lock()
		pending := m.q.changes != nil
		if pending && !m.anyConnected() && !m.anySession() {
			m.q.mu.Unlock()
			break
		}
		if m.anyConnected() {
			m.q.askRepair()
		}
		ch := m.q.released
		m.q.mu.Unlock()
		if !pending {
			return
		}
		select {
		case <-ch:
		case <-time.After(100 * time.Millisecond):
		}
	}
	m.log.Warn("stopping with changes the spool could not keep and no replica to repair; the activity record keeps them for the next master")
}

// anySession reports whether a replica had a session with this master: it
// may come back while the master stops.
func (m *Master) anySession() bool {
	for _, f := range m.feeds {
		if f.sender.Stats().Sessions > 0 {
			return true
		}
	}
	return false
}

func (m *Master) anyConnected() bool {
	for _, f := range m.feeds {
		if f.sender.Stats().Connected {
			return true
		}
	}
	return false
}

// settleActivity starts the activity record over when every replica has
// everything: its last walk re-asserted every name, which would otherwise
// make the next master send the whole tree again. Capture has stopped, so
// the directories it last reported stand.
func (m *Master) settleActivity() {
	m.q.mu.Lock()
	pending := m.q.changes != nil
	m.q.mu.Unlock()
	durable, all := m.durableAll()
	if pending || !all || durable < m.q.spool.Last() {
		return
	}
	if err := m.al.restart(m.epoch, durable, true, m.al.hdr.Dirs); err != nil {
		m.log.Error("activity record", "err", err)
	}
}

// drain waits for the replicas to apply everything captured, except those
// that never had a session with this master: they may be down for good.
func (m *Master) drain(stopBy time.Time) {
	last := m.q.spool.Last()
	// Every replica waited for sees the same deadline close.
	ctx, cancel := context.WithDeadline(context.Background(), stopBy)
	defer cancel()
	for _, f := range m.feeds {
		if f.sender.Stats().Sessions == 0 {
			m.log.Warn("replica never connected; not waiting for it", "replica", f.r.Addr)
			continue
		}
		if !f.waitApplied(last, ctx.Done()) {
			m.log.Warn("replica did not apply everything before the drain timeout; it resumes from its durable point next time",
				"replica", f.r.Addr, "applied", f.ack().Applied, "last", last, "timeout", m.cfg.DrainTimeout)
		}
	}
}

func (m *Master) newFeed(id int, r Replica) (*feed, error) {
	tc, err := m.cfg.TLS(r.Name)
	if err != nil {
		return nil, err
	}
	f := &feed{m: m, id: id, r: r, moved: make(chan struct{})}
	sc := m.cfg.Stream
	sc.Addr, sc.TLS, sc.Feed, sc.Logger = r.Addr, tc, f, m.log
	sc.Hello = stream.Hello{
		Scenario: m.cfg.Scenario, Master: m.cfg.Name, Replica: r.Name, Epoch: m.epoch,
		Root: m.source.Root(), Compress: m.cfg.Compress,
	}
	if m.cfg.Bandwidth > 0 {
		burst := int(min(m.cfg.Bandwidth, 1<<20))
		sc.Limit = rate.NewLimiter(rate.Limit(m.cfg.Bandwidth), burst)
	}
	f.sender = stream.NewSender(sc)
	return f, nil
}

// release lets the spool drop what every replica has made durable (except
// replicas that lost their place in it), and the lag marks what every
// replica has applied.
func (m *Master) release() error {
	durable, applied := uint64(1<<64-1), uint64(1<<64-1)
	for _, f := range m.feeds {
		a, evicted := f.state()
		if !evicted {
			durable = min(durable, a.Durable)
		}
		applied = min(applied, a.Applied)
	}
	m.q.forget(applied)
	return m.q.releasedUpTo(durable)
}

// durableAll is what every replica not evicted has made durable, and
// whether all of them have this epoch's data.
func (m *Master) durableAll() (uint64, bool) {
	durable, all := uint64(1<<64-1), true
	for _, f := range m.feeds {
		f.mu.Lock()
		if !f.evicted {
			durable = min(durable, f.last.Durable)
			all = all && f.epoch == m.epoch
		}
		f.mu.Unlock()
	}
	return durable, all
}

// whenFull says what a full spool should do, from the replicas' states.
func (m *Master) whenFull() fullAction {
	last := m.q.spool.Last()
	action := fullOverflow
	for _, f := range m.feeds {
		if !f.sender.Stats().Connected {
			continue
		}
		if a, _ := f.state(); a.Durable < last {
			return fullWait
		}
		action = fullEvict
	}
	return action
}

// evict gives up the spool places of the replicas away, and returns what
// the connected ones have all made durable.
func (m *Master) evict() uint64 {
	upTo := uint64(1<<64 - 1)
	for _, f := range m.feeds {
		if f.sender.Stats().Connected {
			a, _ := f.state()
			upTo = min(upTo, a.Durable)
		} else {
			f.mu.Lock()
			f.evicted = true
			f.mu.Unlock()
		}
	}
	return upTo
}

// feed is one replica's view of the master.
type feed struct {
	m      *Master
	id     int // its place in Config.Replicas
	r      Replica
	sender *stream.Sender

	mu      sync.Mutex
	last    stream.Ack
	evicted bool          // its place in the spool was given up: it starts over
	epoch   uint64        // the epoch of its data, once it had a session
	moved   chan struct{} // closed and replaced when the replica acknowledges
	req     atomic.Pointer[request]
}

var _ stream.Feed = (*feed)(nil)

func (f *feed) Start(ctx context.Context, w *stream.Welcome, p stream.Peer) (stream.Cursor, *stream.Reset, error) {
	req := f.req.Swap(nil)
	var (
		from uint64
		how  startHow
		err  error
	)
	if req != nil && !req.verify {
		from, how, err = f.m.q.startCopy(ctx, f.id, w.Epoch, w.Durable, p)
		req.done <- requestResult{From: from, err: err}
	} else {
		from, how, err = f.m.q.start(ctx, f.id, w.Epoch, w.Durable, holds(w), p)
	}
	if req != nil && req.verify {
		res := requestResult{err: err}
		switch {
		case err != nil:
		case how != startResume:
			res.err = fmt.Errorf("master: replica %s cannot resume: it starts over from a copy, verify it after", f.r.Addr)
		default:
			res.Report, res.err = f.verify(ctx, w, p)
		}
		req.done <- res
	}
	if err != nil {
		return nil, nil, err
	}
	a := stream.Ack{Received: w.Received, Applied: w.Applied, Durable: w.Durable}
	var rs *stream.Reset
	if how != startResume {
		rs = &stream.Reset{Epoch: f.m.epoch, From: from, Keep: how == startRepair || how == startDiff}
		a = stream.Ack{Received: from - 1, Applied: from - 1, Durable: from - 1}
	}
	f.mu.Lock()
	f.evicted = false
	f.epoch = f.m.epoch
	f.mu.Unlock()
	f.progress(a)
	return f.m.q.spool.Cursor(from), rs, nil
}

// holds is the seq a replica's tree is at once it has applied all it has:
// a restarted replica may have released from its spool what it applied.
func holds(w *stream.Welcome) uint64 { return max(w.Received, w.Applied) }

func (f *feed) Progress(a stream.Ack) {
	f.progress(a)
	f.m.q.caughtUp(a.Received)
	// Once a second at most, let the activity record start over if every
	// replica has everything.
	if now := time.Now().UnixNano(); now-f.m.snapAt.Load() > int64(time.Second) && a.Durable >= f.m.q.spool.Last() {
		f.m.snapAt.Store(now)
		f.m.source.SnapshotDirs()
	}
	if err := f.m.release(); err != nil {
		f.m.log.Error("spool release failed", "err", err)
	}
}

func (f *feed) state() (stream.Ack, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.last, f.evicted
}

func (f *feed) progress(a stream.Ack) {
	f.mu.Lock()
	f.last = a
	close(f.moved)
	f.moved = make(chan struct{})
	f.mu.Unlock()
}

func (f *feed) ack() stream.Ack {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.last
}

// waitApplied waits for the replica to apply seq, or for done; one
// away may come back meanwhile.
func (f *feed) waitApplied(seq uint64, done <-chan struct{}) bool {
	for {
		f.mu.Lock()
		applied, ch := f.last.Applied >= seq, f.moved
		f.mu.Unlock()
		if applied {
			return true
		}
		select {
		case <-ch:
		case <-done:
			return false
		}
	}
}

// report is the status document.
func (m *Master) report() monitor.Report {
	st := m.source.Stats()
	sc := monitor.Scenario{
		ID: m.cfg.Scenario, Root: m.source.Root(), State: "capturing", Epoch: m.epoch,
		Captured: m.q.spool.Last(), SpoolBytes: m.q.spool.Bytes(),
		Throughput: m.rate.PerSecond(st.WriteBytes),
	}
	m.q.mu.Lock()
	if m.q.changes != nil {
		sc.State = "spool full: keeping a record of changes for a repair"
	}
	m.q.mu.Unlock()
	for _, f := range m.feeds {
		ss := f.sender.Stats()
		a := f.ack()
		lag, lagBytes := m.q.lag(a.Applied)
		sc.Peers = append(sc.Peers, monitor.Peer{
			Addr: f.r.Addr, Connected: ss.Connected, Sent: ss.Sent,
			Received: a.Received, Applied: a.Applied, Durable: a.Durable,
			LagSeconds: lag.Seconds(), LagBytes: lagBytes, Reconnects: ss.Reconnects, LastError: ss.LastError,
		})
	}
	return monitor.Report{Role: "master", Name: m.cfg.Name, Scenarios: []monitor.Scenario{sc}}
}

func checkDirs(source, state string) error {
	if source == "" || state == "" {
		return errors.New("master: a source and a state directory are required")
	}
	src, err := filepath.Abs(source)
	if err != nil {
		return err
	}
	st, err := filepath.Abs(state)
	if err != nil {
		return err
	}
	if rel, err := filepath.Rel(src, st); err == nil && filepath.IsLocal(rel) || src == st {
		return fmt.Errorf("master: state directory %s is inside the source %s: the spool would capture itself", st, src)
	}
	return nil
}
