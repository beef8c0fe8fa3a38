package stream

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"
)

// Feed is the master's side of a session: where a replica's batches come
// from and where its acknowledgements go.
type Feed interface {
	// Start answers a replica's Welcome with the cursor its batches come
	// from and, when it cannot resume where it stands, the Reset that makes
	// it start over. It may ask the replica what it holds through p, and
	// wait (for a full copy to begin) until ctx ends.
	Start(ctx context.Context, w *Welcome, p Peer) (Cursor, *Reset, error)
	// Progress reports the replica's acknowledgements as they arrive.
	Progress(a Ack)
}

// Peer is the replica as a Feed sees it before the session starts.
type Peer interface {
	// Manifest asks the replica for its manifest and hands each part's
	// data to part, in order, until the last.
	Manifest(ctx context.Context, req *ManifestRequest, part func(data []byte) error) error
}

// Cursor yields batches in order; journal.Cursor is one.
type Cursor interface {
	// Next returns the next batch and its first and last seq, waiting for
	// one until ctx ends.
	Next(ctx context.Context) (b []byte, first, last uint64, err error)
	Close()
}

// SenderConfig configures the master's connection to one replica.
type SenderConfig struct {
	Addr  string
	TLS   *tls.Config // ClientConfig: the replica must prove the expected identity
	Hello Hello       // sent first; Version is filled in
	Feed  Feed
	// Window bounds the bytes sent and not yet acknowledged as received,
	// so a slow replica holds back the sender, not the master's memory.
	Window int64
	// Heartbeat is how often an idle side sends a frame; Timeout how long
	// a side waits for one before it gives the connection up.
	Heartbeat, Timeout time.Duration
	// Reconnects wait MinBackoff, doubling up to MaxBackoff.
	MinBackoff, MaxBackoff time.Duration
	// Limit caps the bytes per second written to the replica; nil: none.
	Limit  *rate.Limiter
	Logger *slog.Logger
}

func (c *SenderConfig) fill() {
	c.Hello.Version = Version
	if c.Window == 0 {
		c.Window = 64 << 20
	}
	if c.Heartbeat == 0 {
		c.Heartbeat = time.Second
	}
	if c.Timeout == 0 {
		c.Timeout = 10 * time.Second
	}
	if c.MinBackoff == 0 {
		c.MinBackoff = 100 * time.Millisecond
	}
	if c.MaxBackoff == 0 {
		c.MaxBackoff = 10 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
}

// SenderStats describe one replica connection.
type SenderStats struct {
	Connected  bool
	Sessions   uint64 // handshakes completed
	Reconnects uint64 // sessions that ended, or could not start, other than by ctx
	Sent       uint64 // last seq sent in the current or last session
	SentBytes  uint64 // batch bytes sent, all sessions
	Ack        Ack    // the replica's last acknowledgement
	LastError  string // why the last session ended
}

// Sender keeps a session with one replica going: it dials, hands over,
// resumes where the replica's durable sequence number says, and reconnects
// with exponential backoff when the session ends.
type Sender struct {
	cfg SenderConfig
	log *slog.Logger

	mu    sync.Mutex
	stats SenderStats
	// sent batches waiting for the replica to say it has them
	inflight      []sentBatch
	inflightBytes int64
	acked         chan struct{}           // a receive acknowledgement freed window
	restart       context.CancelCauseFunc // ends the current session; nil between sessions

	connected atomic.Bool
}

type sentBatch struct {
	last uint64
	size int64
}

// NewSender returns a Sender; Run starts it.
func NewSender(cfg SenderConfig) *Sender {
	cfg.fill()
	return &Sender{cfg: cfg, log: cfg.Logger.With("replica", cfg.Addr), acked: make(chan struct{}, 1)}
}

// Stats returns the connection's state now.
func (s *Sender) Stats() SenderStats {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.stats
	st.Connected = s.connected.Load()
	return st
}

// Run keeps sessions going until ctx ends. It returns nil then: the
// replica's position is in its acknowledgements.
func (s *Sender) Run(ctx context.Context) error {
	backoff := s.cfg.MinBackoff
	for {
		handshook, err := s.session(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if handshook {
			backoff = s.cfg.MinBackoff
		}
		s.mu.Lock()
		s.stats.Reconnects++
		s.stats.LastError = err.Error()
		s.mu.Unlock()
		s.log.Warn("replication session ended; reconnecting", "err", err, "retry_in", backoff)
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
		backoff = min(2*backoff, s.cfg.MaxBackoff)
	}
}

// session runs one connection; handshook reports whether the replica
// accepted it.
func (s *Sender) session(ctx context.Context) (handshook bool, err error) {
	d := tls.Dialer{NetDialer: &net.Dialer{Timeout: s.cfg.Timeout}, Config: s.cfg.TLS}
	raw, err := d.DialContext(ctx, "tcp", s.cfg.Addr)
	if err != nil {
		return false, fmt.Errorf("stream: dial %s: %w", s.cfg.Addr, err)
	}
	tc := raw.(*tls.Conn)
	defer tc.Close()
	conn := &progressConn{Conn: tc, timeout: s.cfg.Timeout}
	sctx, cancelCause := context.WithCancelCause(ctx)
	cancel := func() { cancelCause(nil) }
	defer cancel()
	s.mu.Lock()
	s.restart = cancelCause
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		s.restart = nil
		s.mu.Unlock()
	}()
	var w io.Writer = conn
	lctx, lcancel := context.WithCancel(context.Background())
	defer lcancel()
	if l := s.cfg.Limit; l != nil && l.Limit() != rate.Inf {
		w = &limitedWriter{ctx: lctx, w: conn, l: l}
	}
	fw := &lockedWriter{fw: NewFrameWriter(w)}
	fr := NewFrameReader(conn)
	// Closing the connection is what unblocks reads and writes on ctx end.
	// A stopping master says why first, straight past the limiter, unless
	// a frame is half written.
	stop := context.AfterFunc(sctx, func() {
		if ctx.Err() != nil && fw.mu.TryLock() {
			tc.SetWriteDeadline(time.Now().Add(time.Second))
			NewFrameWriter(tc).WriteMsg(&Close{Reason: "master stopping"})
			fw.mu.Unlock()
		}
		lcancel()
		tc.Close()
	})
	defer stop()

	if err := fw.msg(&s.cfg.Hello); err != nil {
		return false, fmt.Errorf("stream: hello to %s: %w", s.cfg.Addr, err)
	}
	m, err := readMsg(fr)
	if err != nil {
		return false, fmt.Errorf("stream: waiting for welcome from %s: %w", s.cfg.Addr, err)
	}
	welcome, ok := m.(*Welcome)
	if !ok {
		return false, unexpected(m, "welcome")
	}
	if welcome.Version != Version || welcome.Scenario != s.cfg.Hello.Scenario {
		return false, fmt.Errorf("stream: replica %s answered version %d scenario %q, want version %d scenario %q",
			s.cfg.Addr, welcome.Version, welcome.Scenario, Version, s.cfg.Hello.Scenario)
	}
	s.log.Info("replica connected", "identity", PeerName(tc.ConnectionState()), "epoch", welcome.Epoch,
		"durable", welcome.Durable, "applied", welcome.Applied)

	cur, reset, err := s.start(sctx, fw, fr, welcome)
	if err != nil {
		return true, err
	}
	defer cur.Close()
	s.mu.Lock()
	s.stats.Sessions++
	s.stats.Ack = Ack{Received: welcome.Received, Applied: welcome.Applied, Durable: welcome.Durable}
	s.inflight, s.inflightBytes = s.inflight[:0], 0
	s.mu.Unlock()
	s.connected.Store(true)
	defer s.connected.Store(false)

	if reset != nil {
		if reset.Keep {
			s.log.Info("replica keeps its data; a repair follows", "epoch", reset.Epoch, "from", reset.From)
		} else {
			s.log.Info("replica starts over from a full copy", "epoch", reset.Epoch, "from", reset.From)
		}
		if err := fw.msg(reset); err != nil {
			return true, err
		}
	}
	type result struct {
		write bool
		err   error
	}
	errc := make(chan result, 2)
	go func() { errc <- result{false, s.readLoop(fr)} }()
	go func() { errc <- result{true, s.writeLoop(sctx, fw, cur)} }()
	first := <-errc
	err = first.err
	if first.write && ctx.Err() == nil {
		// A replica that hangs up sends Close first: let the reader find
		// it, for its reason is the one worth reporting.
		tc.SetReadDeadline(time.Now().Add(time.Second))
		if second := <-errc; errors.Is(second.err, ErrClosedByPeer) {
			err = second.err
		}
		cancel()
	} else {
		cancel() // closes the connection, after a Close frame if stopping
		<-errc
	}
	if ctx.Err() != nil {
		return true, ctx.Err()
	}
	if cause := context.Cause(sctx); errors.Is(cause, ErrRestarted) {
		return true, cause
	}
	return true, err
}

// ErrRestarted ends a session that Restart cut.
var ErrRestarted = errors.New("stream: session restarted on request")

// Restart ends the current session, if there is one; the next starts with
// the Feed's Start as always. It reports whether a session was cut.
func (s *Sender) Restart() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.restart == nil {
		return false
	}
	s.restart(ErrRestarted)
	return true
}

// start asks the Feed where the session starts, sending heartbeats while
// it waits (it may wait for a full copy to begin).
func (s *Sender) start(ctx context.Context, fw *lockedWriter, fr *FrameReader, w *Welcome) (Cursor, *Reset, error) {
	done := make(chan struct{})
	beating := make(chan struct{})
	// A replica that cannot take a heartbeat is gone: Start stops waiting.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		defer close(beating)
		t := time.NewTicker(s.cfg.Heartbeat)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				if fw.heartbeat() != nil {
					cancel()
					return
				}
			}
		}
	}()
	cur, reset, err := s.cfg.Feed.Start(ctx, w, &peer{s: s, fw: fw, fr: fr})
	close(done)
	<-beating
	return cur, reset, err
}

// peer reads the replica's answers while the session has not started:
// only Start reads then.
type peer struct {
	s  *Sender
	fw *lockedWriter
	fr *FrameReader
}

var _ Peer = (*peer)(nil)

func (p *peer) Manifest(ctx context.Context, req *ManifestRequest, part func([]byte) error) error {
	if err := p.fw.msg(req); err != nil {
		return fmt.Errorf("stream: manifest request to %s: %w", p.s.cfg.Addr, err)
	}
	for ctx.Err() == nil {
		m, err := readMsg(p.fr)
		if err != nil {
			return fmt.Errorf("stream: manifest from %s: %w", p.s.cfg.Addr, err)
		}
		switch m := m.(type) {
		case *ManifestPart:
			if err := part(m.Data); err != nil {
				return err
			}
			if m.Last {
				return nil
			}
		case *Ack, *Heartbeat:
		default:
			return unexpected(m, "manifest part")
		}
	}
	return ctx.Err()
}

// readLoop takes the replica's acknowledgements.
func (s *Sender) readLoop(fr *FrameReader) error {
	for {
		m, err := readMsg(fr)
		if err != nil {
			return fmt.Errorf("stream: from replica %s: %w", s.cfg.Addr, err)
		}
		switch m := m.(type) {
		case *Ack:
			if m.Epoch == s.cfg.Hello.Epoch {
				s.ack(*m)
			}
		case *Heartbeat:
		default:
			return unexpected(m, "ack or heartbeat")
		}
	}
}

func (s *Sender) ack(a Ack) {
	s.mu.Lock()
	s.stats.Ack = a
	i := 0
	for i < len(s.inflight) && s.inflight[i].last <= a.Received {
		s.inflightBytes -= s.inflight[i].size
		i++
	}
	s.inflight = s.inflight[i:]
	s.mu.Unlock()
	if i > 0 {
		select {
		case s.acked <- struct{}{}:
		default:
		}
	}
	s.cfg.Feed.Progress(a)
}

// writeLoop sends batches as the window allows, and heartbeats when idle.
func (s *Sender) writeLoop(ctx context.Context, fw *lockedWriter, cur Cursor) error {
	hb := time.NewTicker(s.cfg.Heartbeat)
	defer hb.Stop()
	for {
		s.mu.Lock()
		full := s.inflightBytes >= s.cfg.Window
		s.mu.Unlock()
		if full {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-s.acked:
			case <-hb.C:
				if err := fw.heartbeat(); err != nil {
					return err
				}
			}
			continue
		}
		nctx, cancel := context.WithTimeout(ctx, s.cfg.Heartbeat)
		b, _, last, err := cur.Next(nctx)
		cancel()
		switch {
		case errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil:
			if err := fw.heartbeat(); err != nil {
				return err
			}
			continue
		case err != nil:
			return fmt.Errorf("stream: next batch for %s: %w", s.cfg.Addr, err)
		}
		s.mu.Lock()
		s.inflight = append(s.inflight, sentBatch{last: last, size: int64(len(b))})
		s.inflightBytes += int64(len(b))
		s.mu.Unlock()
		if err := fw.frame(FrameBatch, b); err != nil {
			return err
		}
		s.mu.Lock()
		s.stats.Sent = last
		s.stats.SentBytes += uint64(len(b))
		s.mu.Unlock()
	}
}

// lockedWriter serialises frames from the goroutines of one side.
type lockedWriter struct {
	mu sync.Mutex
	fw *FrameWriter
}

func (l *lockedWriter) frame(t FrameType, body []byte) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if err := l.fw.WriteFrame(t, body); err != nil {
		return fmt.Errorf("stream: send %s: %w", t, err)
	}
	return nil
}

func (l *lockedWriter) msg(m Message) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if err := l.fw.WriteMsg(m); err != nil {
		return fmt.Errorf("stream: send %s: %w", m.Type(), err)
	}
	return nil
}

func (l *lockedWriter) heartbeat() error {
	return l.msg(&Heartbeat{Time: time.Now().UnixNano()})
}

// readMsg reads one control frame. A Close from the peer becomes an error
// carrying its reason.
func readMsg(fr *FrameReader) (Message, error) {
	t, body, err := fr.ReadFrame()
	if err != nil {
		return nil, err
	}
	if t == FrameBatch {
		return nil, fmt.Errorf("stream: unexpected batch frame: %w", ErrCorrupt)
	}
	m, err := DecodeMsg(t, body)
	if err != nil {
		return nil, err
	}
	if c, ok := m.(*Close); ok {
		return nil, fmt.Errorf("stream: peer closed the session: %s: %w", c.Reason, ErrClosedByPeer)
	}
	return m, nil
}

func unexpected(m Message, want string) error {
	return fmt.Errorf("stream: unexpected %s frame, want %s: %w", m.Type(), want, ErrCorrupt)
}

// progressConn bounds each read and write by the timeout, in pieces small
// enough that a slow (or paced) link still moves within it: the timeout
// means no progress for that long, not a frame that takes longer.
type progressConn struct {
	net.Conn
	timeout time.Duration
}

const progressPiece = 256 << 10

func (c *progressConn) Read(p []byte) (int, error) {
	c.Conn.SetReadDeadline(time.Now().Add(c.timeout))
	return c.Conn.Read(p)
}

func (c *progressConn) Write(p []byte) (int, error) {
	n := 0
	for len(p) > 0 {
		k := min(len(p), progressPiece)
		c.Conn.SetWriteDeadline(time.Now().Add(c.timeout))
		m, err := c.Conn.Write(p[:k])
		n += m
		if err != nil {
			return n, err
		}
		p = p[k:]
	}
	return n, nil
}

// limitedWriter paces writes with a token bucket, in pieces no larger than
// its burst.
type limitedWriter struct {
	ctx context.Context
	w   io.Writer
	l   *rate.Limiter
}

func (lw *limitedWriter) Write(p []byte) (int, error) {
	n := 0
	for len(p) > 0 {
		// A burst of 0 makes WaitN fail rather than spin.
		k := min(len(p), max(lw.l.Burst(), 1))
		if err := lw.l.WaitN(lw.ctx, k); err != nil {
			return n, err
		}
		m, err := lw.w.Write(p[:k])
		n += m
		if err != nil {
			return n, err
		}
		p = p[k:]
	}
	return n, nil
}
