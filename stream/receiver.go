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
	"time"
)

// Target is the replica's side of a session with one master.
type Target interface {
	// Reset throws the replica's data away: the master rebuilds it with
	// the records from r.From of epoch r.Epoch on.
	Reset(r *Reset) error
	// Receive stores one batch. An error ends the session with its text as
	// the reason, and nothing of the batch is kept.
	Receive(b []byte) error
	// Progress is what the replica holds, has applied and has made durable.
	Progress() Ack
	// Changed is signalled when Progress has moved.
	Changed() <-chan struct{}
	// Manifest answers a ManifestRequest: the manifest of what the replica
	// holds once it has applied all it holds, in parts handed to send.
	Manifest(ctx context.Context, req *ManifestRequest, send func(*ManifestPart) error) error
	// End says the session is over: another may start.
	End(err error)
}

// Accepter answers a master's Hello with the Target the session feeds and
// the Welcome that tells the master where to resume, or refuses it with an
// error whose text is sent to the master as the reason.
type Accepter func(ctx context.Context, h *Hello, peer string) (Target, *Welcome, error)

// ReceiverConfig configures a replica's listener.
type ReceiverConfig struct {
	TLS                *tls.Config // from ServerConfig: masters must present a certificate of the CA
	Accept             Accepter
	Heartbeat, Timeout time.Duration
	Logger             *slog.Logger
}

// Receiver accepts masters' sessions.
type Receiver struct {
	cfg ReceiverConfig
	log *slog.Logger
	wg  sync.WaitGroup
}

// NewReceiver returns a Receiver; Serve starts it.
func NewReceiver(cfg ReceiverConfig) *Receiver {
	if cfg.Heartbeat == 0 {
		cfg.Heartbeat = time.Second
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = 10 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Receiver{cfg: cfg, log: cfg.Logger}
}

// Serve accepts connections on ln until ctx ends, then closes ln and waits
// for the sessions to end.
func (s *Receiver) Serve(ctx context.Context, ln net.Listener) error {
	stop := context.AfterFunc(ctx, func() { ln.Close() })
	defer stop()
	defer s.wg.Wait()
	for {
		conn, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return fmt.Errorf("stream: accept: %w", err)
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			err := s.serveConn(ctx, conn)
			switch {
			case ctx.Err() != nil:
			case errors.Is(err, ErrClosedByPeer):
				s.log.Info("master session ended", "remote", conn.RemoteAddr().String(), "err", err)
			case err != nil:
				s.log.Warn("master session ended", "remote", conn.RemoteAddr().String(), "err", err)
			}
		}()
	}
}

func (s *Receiver) serveConn(ctx context.Context, raw net.Conn) error {
	defer raw.Close()
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(sctx, func() { raw.Close() })
	defer stop()

	tc := tls.Server(raw, s.cfg.TLS)
	raw.SetDeadline(time.Now().Add(s.cfg.Timeout))
	if err := tc.HandshakeContext(sctx); err != nil {
		return fmt.Errorf("stream: refused before any data: %w", err)
	}
	peer := PeerName(tc.ConnectionState())
	conn := &progressConn{Conn: tc, timeout: s.cfg.Timeout}
	fr := NewFrameReader(conn)
	fw := &lockedWriter{fw: NewFrameWriter(conn)}

	m, err := readMsg(fr)
	if err != nil {
		if IsVersion(err) {
			fw.msg(&Close{Reason: err.Error()})
		}
		return fmt.Errorf("stream: waiting for hello from %s: %w", peer, err)
	}
	hello, ok := m.(*Hello)
	if !ok {
		err := unexpected(m, "hello")
		fw.msg(&Close{Reason: err.Error()})
		return err
	}
	if hello.Version != Version {
		err := fmt.Errorf("stream: master %s speaks protocol version %d, this replica %d: %w", peer, hello.Version, Version, ErrVersion)
		fw.msg(&Close{Reason: err.Error()})
		return err
	}
	tgt, welcome, err := s.cfg.Accept(sctx, hello, peer)
	if err != nil {
		fw.msg(&Close{Reason: err.Error()})
		return fmt.Errorf("stream: refused master %s scenario %q: %w", peer, hello.Scenario, err)
	}
	welcome.Version = Version
	err = s.session(sctx, tc, fr, fw, tgt, welcome)
	tgt.End(err)
	return err
}

func (s *Receiver) session(ctx context.Context, tc *tls.Conn, fr *FrameReader, fw *lockedWriter, tgt Target, welcome *Welcome) error {
	if err := fw.msg(welcome); err != nil {
		return err
	}
	type result struct {
		read bool
		err  error
	}
	errc := make(chan result, 2)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() { errc <- result{false, s.ackLoop(ctx, fw, tgt)} }()
	go func() { errc <- result{true, s.readLoop(ctx, fr, fw, tgt)} }()
	first := <-errc
	err := first.err
	if !errors.Is(err, ErrClosedByPeer) && ctx.Err() == nil {
		// Tell the master why, so its log says it too, and let it read
		// that before the connection goes: closing with its frames unread
		// would reset the connection under the Close.
		fw.msg(&Close{Reason: err.Error()})
		if first.read {
			tc.CloseWrite()
			tc.SetReadDeadline(time.Now().Add(time.Second))
			io.Copy(io.Discard, tc)
		}
	}
	cancel()
	tc.Close()
	<-errc
	return err
}

func (s *Receiver) readLoop(ctx context.Context, fr *FrameReader, fw *lockedWriter, tgt Target) error {
	for {
		t, body, err := fr.ReadFrame()
		if err != nil {
			return err
		}
		switch t {
		case FrameBatch:
			if err := tgt.Receive(body); err != nil {
				return err
			}
			continue
		}
		m, err := DecodeMsg(t, body)
		if err != nil {
			return err
		}
		switch m := m.(type) {
		case *Reset:
			if err := tgt.Reset(m); err != nil {
				return err
			}
		case *ManifestRequest:
			// The ack loop's heartbeats go on while the tree is hashed.
			if err := tgt.Manifest(ctx, m, func(p *ManifestPart) error { return fw.msg(p) }); err != nil {
				return err
			}
		case *Heartbeat:
		case *Close:
			return fmt.Errorf("stream: master closed the session: %s: %w", m.Reason, ErrClosedByPeer)
		default:
			return unexpected(m, "batch, reset, manifest request or heartbeat")
		}
	}
}

// ackLoop tells the master what the replica holds whenever it moves, and
// sends heartbeats when it does not.
func (s *Receiver) ackLoop(ctx context.Context, fw *lockedWriter, tgt Target) error {
	hb := time.NewTicker(s.cfg.Heartbeat)
	defer hb.Stop()
	var last Ack
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tgt.Changed():
		case <-hb.C:
		}
		a := tgt.Progress()
		var err error
		if a != last {
			err = fw.msg(&a)
			last = a
		} else {
			err = fw.heartbeat()
		}
		if err != nil {
			return err
		}
	}
}
