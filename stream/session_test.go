package stream_test

// Tests of the session layer: a Sender and a Receiver talking TLS 1.3 over
// loopback TCP with certificates from package certs, the master's batches
// read from a real journal.Spool.
//
// The master side is testFeed, a stream.Feed over the spool that resumes
// where the replica's Welcome says, as package master does. The replica side
// is testReplica, a stream.Target that keeps the records it holds in memory:
// it stands in for package replica, which has its own tests.
//
// No test sleeps or measures a duration. Every wait is on a signal: the
// Feed, the Cursor and the Target notify when they are called, the Sender
// and the Receiver are watched through their loggers, and wireTap watches
// the TLS record layer of the replica's connections. The only timer is
// failsafe, which turns a hang into a failure naming what was awaited.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/time/rate"

	"github.com/writecap/writecap/journal"
	"github.com/writecap/writecap/stream"
)

// Log messages of the Sender and the Receiver that tests wait for.
const (
	senderRetryMsg = "replication session ended; reconnecting" // Warn, with err and retry_in
	receiverEndMsg = "master session ended"                    // with err
)

const (
	testScenario      = "s1"
	masterEpoch       = 7
	errRefusedBatch   = "replica: test refuses this batch"
	tlsRecordOverhead = 1 + 16 // TLS 1.3: inner content type and AEAD tag
)

// ---------------------------------------------------------------------------
// Signals

// bcast wakes everyone waiting on it whenever anything a test watches moves.
type bcast struct {
	mu sync.Mutex
	ch chan struct{}
}

func newBcast() *bcast { return &bcast{ch: make(chan struct{})} }

func (b *bcast) wait() <-chan struct{} {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.ch
}

func (b *bcast) notify() {
	b.mu.Lock()
	defer b.mu.Unlock()
	close(b.ch)
	b.ch = make(chan struct{})
}

// failsafe fires a little before the test binary's own deadline, so that a
// hang fails with what was awaited rather than a bare timeout. It is not a
// measure of anything: every wait ends on a signal long before it.
func failsafe(t *testing.T) <-chan time.Time {
	t.Helper()
	d, ok := t.Deadline()
	if !ok {
		return nil
	}
	return time.After(time.Until(d) * 9 / 10)
}

// waitUntil waits until cond holds, checking it whenever ev is notified.
func waitUntil(t *testing.T, ev *bcast, what string, cond func() bool) {
	t.Helper()
	guard := failsafe(t)
	for {
		ch := ev.wait()
		if cond() {
			return
		}
		select {
		case <-ch:
		case <-guard:
			t.Fatalf("gave up waiting for %s", what)
		}
	}
}

// ---------------------------------------------------------------------------
// Logs

type logEntry struct {
	level slog.Level
	msg   string
	attrs map[string]slog.Value
}

// logBook keeps what a Sender or Receiver logged, and notifies ev.
type logBook struct {
	ev      *bcast
	mu      sync.Mutex
	entries []logEntry
}

func (b *logBook) logger() *slog.Logger { return slog.New(&logHandler{b: b}) }

func (b *logBook) find(msg string) []logEntry {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []logEntry
	for _, e := range b.entries {
		if e.msg == msg {
			out = append(out, e)
		}
	}
	return out
}

func (b *logBook) count(msg string) int { return len(b.find(msg)) }

func (b *logBook) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	var s strings.Builder
	for _, e := range b.entries {
		fmt.Fprintf(&s, "\n  %s %q", e.level, e.msg)
		for k, v := range e.attrs {
			fmt.Fprintf(&s, " %s=%v", k, v)
		}
	}
	return s.String()
}

type logHandler struct {
	b     *logBook
	attrs []slog.Attr
}

func (h *logHandler) Enabled(context.Context, slog.Level) bool { return true }

func (h *logHandler) Handle(_ context.Context, r slog.Record) error {
	e := logEntry{level: r.Level, msg: r.Message, attrs: make(map[string]slog.Value)}
	for _, a := range h.attrs {
		e.attrs[a.Key] = a.Value
	}
	r.Attrs(func(a slog.Attr) bool {
		e.attrs[a.Key] = a.Value
		return true
	})
	h.b.mu.Lock()
	h.b.entries = append(h.b.entries, e)
	h.b.mu.Unlock()
	h.b.ev.notify()
	return nil
}

func (h *logHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return &logHandler{b: h.b, attrs: append(slices.Clip(h.attrs), as...)}
}

func (h *logHandler) WithGroup(string) slog.Handler { return h }

// ---------------------------------------------------------------------------
// The wire

// wireTap wraps the replica's listener and follows the TLS record layer of
// its connections in both directions, decrypting nothing. In TLS 1.3 every
// record after the handshake is an application_data record whose length is
// its plaintext plus tlsRecordOverhead, and a frame of at most 1228 bytes
// (crypto/tls's smallest record size for writes) leaves as one record of its
// own. So a heartbeat frame, whose size is fixed, shows as a record of
// exactly hbLen bytes, and in the flow test a batch frame as one of exactly
// batchLen bytes: the tap sees the order in which the Sender wrote them,
// which is what the Receiver reads.
type wireTap struct {
	net.Listener
	ev       *bcast
	hbLen    int // record length of one heartbeat frame
	batchLen int // record length of one batch frame of the flow test; 0: none

	mu        sync.Mutex
	conns     int
	seq       []byte // master -> replica: 'B' batch, 'H' heartbeat, in order, across connections
	toHBs     int    // replica -> master heartbeats
	fromHB    int    // master -> replica heartbeats
	fromBytes int    // master -> replica application data record bytes
}

func newWireTap(t *testing.T, ln net.Listener, ev *bcast, batchLen int) *wireTap {
	t.Helper()
	var buf bytes.Buffer
	if err := stream.NewFrameWriter(&buf).WriteMsg(&stream.Heartbeat{Time: time.Now().UnixNano()}); err != nil {
		t.Fatal(err)
	}
	return &wireTap{Listener: ln, ev: ev, hbLen: buf.Len() + tlsRecordOverhead, batchLen: batchLen}
}

func (w *wireTap) Accept() (net.Conn, error) {
	c, err := w.Listener.Accept()
	if err != nil {
		return nil, err
	}
	w.mu.Lock()
	w.conns++
	w.mu.Unlock()
	tc := &tapConn{Conn: c}
	tc.in.record = func(typ byte, n int) { w.record(true, typ, n) }
	tc.out.record = func(typ byte, n int) { w.record(false, typ, n) }
	return tc, nil
}

const recordApplicationData = 23

func (w *wireTap) record(fromMaster bool, typ byte, n int) {
	if typ != recordApplicationData {
		return
	}
	w.mu.Lock()
	if fromMaster {
		w.fromBytes += n
	}
	switch {
	case fromMaster && n == w.hbLen:
		w.seq = append(w.seq, 'H')
		w.fromHB++
	case fromMaster && w.batchLen != 0 && n == w.batchLen:
		w.seq = append(w.seq, 'B')
	case !fromMaster && n == w.hbLen:
		w.toHBs++
	}
	w.mu.Unlock()
	w.ev.notify()
}

// bytesFromMaster is the size of the application data records the master
// has sent.
func (w *wireTap) bytesFromMaster() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.fromBytes
}

// heartbeats returns the heartbeats seen from the master and to it.
func (w *wireTap) heartbeats() (fromMaster, toMaster int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.fromHB, w.toHBs
}

// heartbeatAfter reports whether the master has sent a heartbeat after its
// n-th batch, and how many batches it had sent before that heartbeat.
func (w *wireTap) heartbeatAfter(n int) (bool, int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	batches := 0
	for _, c := range w.seq {
		switch {
		case c == 'B':
			batches++
		case batches >= n:
			return true, batches
		}
	}
	return false, batches
}

func (w *wireTap) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return fmt.Sprintf("%d connections, master -> replica %q, %d heartbeats replica -> master", w.conns, w.seq, w.toHBs)
}

type tapConn struct {
	net.Conn
	in, out recordScanner
}

func (c *tapConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.in.scan(p[:n])
	return n, err
}

func (c *tapConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	c.out.scan(p[:n])
	return n, err
}

// recordScanner follows TLS records (5-byte header: type, version, length)
// through a byte stream that arrives in arbitrary pieces.
type recordScanner struct {
	hdr    [5]byte
	have   int // header bytes so far
	left   int // body bytes still to come
	record func(typ byte, n int)
}

func (s *recordScanner) scan(p []byte) {
	for len(p) > 0 {
		if s.have < len(s.hdr) {
			k := copy(s.hdr[s.have:], p)
			s.have += k
			p = p[k:]
			if s.have == len(s.hdr) {
				s.left = int(s.hdr[3])<<8 | int(s.hdr[4])
				if s.left == 0 {
					s.done()
				}
			}
			continue
		}
		k := min(s.left, len(p))
		s.left -= k
		p = p[k:]
		if s.left == 0 {
			s.done()
		}
	}
}

func (s *recordScanner) done() {
	s.record(s.hdr[0], int(s.hdr[3])<<8|int(s.hdr[4]))
	s.have = 0
}

// ---------------------------------------------------------------------------
// Batches

type span struct {
	first, last uint64
	size        int
}

func (s span) String() string { return fmt.Sprintf("#%d-#%d", s.first, s.last) }

// makeBatches encodes records first..first+n-1, writes of dataLen bytes each
// whose content names their seq, per records to a batch (the last batch may
// hold fewer). Records of seqs below 128 encode to the same size, so such
// batches of equal counts are of equal size.
func makeBatches(t *testing.T, first uint64, n, per, dataLen int) ([][]byte, []journal.Record) {
	t.Helper()
	enc := journal.NewEncoder(journal.EncoderOptions{})
	var recs []journal.Record
	for seq := first; seq < first+uint64(n); seq++ {
		data := bytes.Repeat([]byte{byte(seq)}, dataLen)
		copy(data, fmt.Sprintf("record %d;", seq))
		recs = append(recs, journal.Record{Seq: seq, Op: journal.OpWrite, Path: "data", Data: data})
	}
	var batches [][]byte
	for i := 0; i < len(recs); i += per {
		b, err := enc.AppendBatch(nil, recs[i:min(i+per, len(recs))])
		if err != nil {
			t.Fatal(err)
		}
		batches = append(batches, b)
	}
	return batches, recs
}

func spanOf(t *testing.T, b []byte) span {
	t.Helper()
	recs, _, err := journal.DecodeBatch(b, nil)
	if err != nil {
		t.Fatal(err)
	}
	return span{recs[0].Seq, recs[len(recs)-1].Seq, len(b)}
}

// spansFrom is what a Sender resuming at seq from must send: the batch that
// holds from, whole, and every batch after it.
func spansFrom(t *testing.T, batches [][]byte, from uint64) []span {
	t.Helper()
	var out []span
	for _, b := range batches {
		if s := spanOf(t, b); s.last >= from {
			out = append(out, s)
		}
	}
	return out
}

func appendAll(t *testing.T, s *journal.Spool, batches [][]byte) {
	t.Helper()
	for _, b := range batches {
		if err := s.Append(b); err != nil {
			t.Fatal(err)
		}
	}
}

func sameRecords(t *testing.T, got, want []journal.Record) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("replica holds %d records (%s), want %d (%s)", len(got), seqRange(got), len(want), seqRange(want))
	}
	for i := range want {
		g, w := &got[i], &want[i]
		if g.Seq != w.Seq || g.Op != w.Op || g.Path != w.Path || g.Offset != w.Offset || !bytes.Equal(g.Data, w.Data) {
			t.Fatalf("record %d: replica holds %v, want %v", i, g, w)
		}
	}
}

func seqRange(recs []journal.Record) string {
	if len(recs) == 0 {
		return "none"
	}
	return fmt.Sprintf("#%d-#%d", recs[0].Seq, recs[len(recs)-1].Seq)
}

// ---------------------------------------------------------------------------
// The master side: a Feed over a real spool

// testFeed resumes a replica right after its Durable seq when its epoch is
// the master's and the spool still holds what follows, as package master
// does, and otherwise sends it a Reset to start over from the spool's first
// batch.
type testFeed struct {
	spool *journal.Spool
	epoch uint64
	ev    *bcast
	// onNext, when set, is called at every batch a cursor hands the Sender,
	// with the bytes it handed out before it in the same session.
	onNext func(before int64, b span)
	// startWait, when set, is called by Start before it answers.
	startWait func(ctx context.Context)
	// keep: a replica that cannot resume keeps its data, and a Reset with
	// Keep repairs it from right after its Durable seq (a new master
	// taking over an earlier one's replicas).
	keep bool
	// ask, when set, is sent to the replica before the session starts;
	// parts are the data of its answer.
	ask   *stream.ManifestRequest
	parts []string

	mu     sync.Mutex
	starts []stream.Welcome
	resets []*stream.Reset
	handed [][]span // per session, the batches handed to the Sender
	nexts  int      // Next calls begun, all sessions
	idle   int      // Next calls that ended for lack of a batch: the Sender heartbeats after each
	acks   []stream.Ack
}

func (f *testFeed) Start(ctx context.Context, w *stream.Welcome, p stream.Peer) (stream.Cursor, *stream.Reset, error) {
	if f.startWait != nil {
		f.startWait(ctx)
	}
	if f.ask != nil {
		err := p.Manifest(ctx, f.ask, func(d []byte) error {
			f.mu.Lock()
			f.parts = append(f.parts, string(d))
			f.mu.Unlock()
			return nil
		})
		if err != nil {
			return nil, nil, err
		}
	}
	from := w.Durable + 1
	first := f.spool.First()
	if first == 0 {
		first = f.spool.Last() + 1
	}
	var reset *stream.Reset
	switch {
	case w.Epoch == f.epoch && from >= first && w.Durable <= f.spool.Last():
	case f.keep && from >= first && w.Durable <= f.spool.Last():
		reset = &stream.Reset{Epoch: f.epoch, From: from, Keep: true}
	default:
		reset = &stream.Reset{Epoch: f.epoch, From: first}
		from = first
	}
	f.mu.Lock()
	c := &feedCursor{f: f, c: f.spool.Cursor(from), session: len(f.handed)}
	f.starts = append(f.starts, *w)
	f.resets = append(f.resets, reset)
	f.handed = append(f.handed, nil)
	f.mu.Unlock()
	f.ev.notify()
	return c, reset, nil
}

func (f *testFeed) Progress(a stream.Ack) {
	f.mu.Lock()
	f.acks = append(f.acks, a)
	f.mu.Unlock()
	f.ev.notify()
}

func (f *testFeed) sessions() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.starts)
}

// idleNexts is the number of Next calls that ended for lack of a batch,
// each after waiting a whole Heartbeat.
func (f *testFeed) idleNexts() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.idle
}

// nextCalls is the number of Next calls begun. The Sender's writeLoop makes
// the first once the session is counted in Stats.
func (f *testFeed) nextCalls() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.nexts
}

func (f *testFeed) lastAck() stream.Ack {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.acks) == 0 {
		return stream.Ack{}
	}
	return f.acks[len(f.acks)-1]
}

func (f *testFeed) resetsSent() []*stream.Reset {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.resets)
}

func (f *testFeed) handedOut(session int) []span {
	f.mu.Lock()
	defer f.mu.Unlock()
	if session >= len(f.handed) {
		return nil
	}
	return slices.Clone(f.handed[session])
}

// feedCursor is the spool's cursor, watched.
type feedCursor struct {
	f       *testFeed
	c       *journal.Cursor
	session int
	bytes   int64 // handed out so far
}

func (c *feedCursor) Next(ctx context.Context) ([]byte, uint64, uint64, error) {
	f := c.f
	f.mu.Lock()
	f.nexts++
	f.mu.Unlock()
	f.ev.notify()
	b, first, last, err := c.c.Next(ctx)
	f.mu.Lock()
	var before int64
	switch {
	case err == nil:
		before = c.bytes
		c.bytes += int64(len(b))
		f.handed[c.session] = append(f.handed[c.session], span{first, last, len(b)})
	case errors.Is(err, context.DeadlineExceeded):
		f.idle++
	}
	onNext := f.onNext
	f.mu.Unlock()
	if err == nil && onNext != nil {
		onNext(before, span{first, last, len(b)})
	}
	f.ev.notify()
	return b, first, last, err
}

func (c *feedCursor) Close() { c.c.Close() }

// ---------------------------------------------------------------------------
// The replica side: a Target over an in-memory record list

// testReplica stands in for package replica (which has its own tests): it
// holds records in memory, consecutive from base+1, and reports them
// received, applied and durable at once.
type testReplica struct {
	t       *testing.T
	ev      *bcast
	name    string
	changed chan struct{}

	// Set before the Receiver starts.
	refuse error // Accept refuses every master with this error
	failAt int   // the failAt-th batch offered (from 1, over all sessions) is refused
	hold   bool  // Progress reports received only what release let through
	window int64 // > 0: check at each Receive that the Sender keeps to this window

	mu       sync.Mutex
	epoch    uint64
	base     uint64
	recs     []journal.Record
	released uint64
	accepts  int
	offered  int // batches offered, all sessions
	sessions []*sessionLog
}

// sessionLog is what the Target of one session saw.
type sessionLog struct {
	welcome stream.Welcome
	resets  []stream.Reset
	asked   []stream.ManifestRequest
	events  []string // "manifest", "reset", "batch", in order
	batches []span   // batches offered
	refused int      // batches refused
	ended   bool
	end     error
}

func newTestReplica(t *testing.T, ev *bcast, epoch uint64, holds []journal.Record) *testReplica {
	return &testReplica{t: t, ev: ev, name: "replica", changed: make(chan struct{}, 1), epoch: epoch, recs: slices.Clone(holds)}
}

func (r *testReplica) held() uint64 { return r.base + uint64(len(r.recs)) }

func (r *testReplica) signal() {
	select {
	case r.changed <- struct{}{}:
	default:
	}
	r.ev.notify()
}

func (r *testReplica) accept(_ context.Context, h *stream.Hello, peer string) (stream.Target, *stream.Welcome, error) {
	defer r.ev.notify()
	r.mu.Lock()
	defer r.mu.Unlock()
	r.accepts++
	switch {
	case r.refuse != nil:
		return nil, nil, r.refuse
	case peer != "master" || h.Master != "master" || h.Replica != r.name || h.Scenario != testScenario:
		err := fmt.Errorf("unexpected hello %+v from %q", h, peer)
		r.t.Error(err)
		return nil, nil, err
	}
	held := r.held()
	w := &stream.Welcome{Scenario: testScenario, Replica: r.name, Epoch: r.epoch, Received: held, Applied: held, Durable: held}
	r.sessions = append(r.sessions, &sessionLog{welcome: *w})
	return &replicaSession{r: r, log: r.sessions[len(r.sessions)-1]}, w, nil
}

// release lets acknowledgements through up to seq (with hold).
func (r *testReplica) release(seq uint64) {
	r.mu.Lock()
	r.released = seq
	r.mu.Unlock()
	r.signal()
}

// releasedBytes is the size of the batches offered in session i that are
// wholly released.
func (r *testReplica) releasedBytes(i int) int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.releasedBytesLocked(r.sessions[i])
}

func (r *testReplica) releasedBytesLocked(log *sessionLog) int64 {
	var n int64
	for _, b := range log.batches {
		if b.last <= r.released {
			n += int64(b.size)
		}
	}
	return n
}

func (r *testReplica) holding() (uint64, []journal.Record) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.held(), slices.Clone(r.recs)
}

func (r *testReplica) session(i int) sessionLog {
	r.mu.Lock()
	defer r.mu.Unlock()
	if i >= len(r.sessions) {
		return sessionLog{}
	}
	l := *r.sessions[i]
	l.batches = slices.Clone(l.batches)
	l.events = slices.Clone(l.events)
	return l
}

func (r *testReplica) currentEpoch() uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.epoch
}

func (r *testReplica) numSessions() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.sessions)
}

func (r *testReplica) acceptCalls() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.accepts
}

func (r *testReplica) String() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := fmt.Sprintf("replica epoch %d holds #%d-#%d, %d accepts", r.epoch, r.base+1, r.held(), r.accepts)
	for i, l := range r.sessions {
		s += fmt.Sprintf("\n  session %d: welcome durable %d, events %v, batches %v, ended %v (%v)", i, l.welcome.Durable, l.events, l.batches, l.ended, l.end)
	}
	return s
}

type replicaSession struct {
	r   *testReplica
	log *sessionLog
}

func (s *replicaSession) Reset(rs *stream.Reset) error {
	r := s.r
	defer r.signal()
	r.mu.Lock()
	defer r.mu.Unlock()
	s.log.resets = append(s.log.resets, *rs)
	s.log.events = append(s.log.events, "reset")
	r.epoch = rs.Epoch
	if rs.Keep && rs.From-1 >= r.base && rs.From-1 <= r.held() {
		r.recs = r.recs[:rs.From-1-r.base] // kept; the batches from From repair the rest
		return nil
	}
	r.base, r.recs = rs.From-1, nil
	return nil
}

func (s *replicaSession) Receive(b []byte) error {
	r := s.r
	recs, n, err := journal.DecodeBatch(b, nil)
	if err == nil && n != len(b) {
		err = fmt.Errorf("%d bytes after the batch", len(b)-n)
	}
	if err != nil {
		r.t.Errorf("replica got a bad batch: %v", err)
		return err
	}
	first, last := recs[0].Seq, recs[len(recs)-1].Seq
	defer r.signal()
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.window > 0 {
		// The Sender sent this batch when the bytes it had sent and not seen
		// acknowledged were under the window; what it has seen acknowledged
		// is at most what the test released.
		var before int64
		for _, b := range s.log.batches {
			before += int64(b.size)
		}
		if out := before - r.releasedBytesLocked(s.log); out >= r.window {
			r.t.Errorf("batch #%d-#%d arrived with %d bytes sent before it unacknowledged, window %d", first, last, out, r.window)
		}
	}
	s.log.events = append(s.log.events, "batch")
	s.log.batches = append(s.log.batches, span{first, last, len(b)})
	r.offered++
	if r.offered == r.failAt {
		s.log.refused++
		return errors.New(errRefusedBatch)
	}
	held := r.held()
	switch {
	case first > held+1:
		err = fmt.Errorf("gap: batch #%d-#%d offered to a replica that holds up to #%d", first, last, held)
	case last <= held:
		err = fmt.Errorf("duplicate: batch #%d-#%d offered to a replica that holds up to #%d", first, last, held)
	}
	if err != nil {
		r.t.Error(err)
		return err
	}
	r.recs = append(r.recs, recs[held+1-first:]...) // a straddling batch: keep only what it lacks
	return nil
}

func (s *replicaSession) Progress() stream.Ack {
	r := s.r
	r.mu.Lock()
	defer r.mu.Unlock()
	h := r.held()
	if r.hold {
		h = min(h, r.released)
	}
	return stream.Ack{Received: h, Applied: h, Durable: h, Epoch: r.epoch}
}

func (s *replicaSession) Changed() <-chan struct{} { return s.r.changed }

// Manifest answers with three parts naming the request.
func (s *replicaSession) Manifest(ctx context.Context, req *stream.ManifestRequest, send func(*stream.ManifestPart) error) error {
	s.r.mu.Lock()
	s.log.asked = append(s.log.asked, *req)
	s.log.events = append(s.log.events, "manifest")
	s.r.mu.Unlock()
	for i := range 3 {
		if err := send(&stream.ManifestPart{Data: []byte(fmt.Sprintf("part %d, blocks of %d", i, req.BlockSize)), Last: i == 2}); err != nil {
			return err
		}
	}
	return nil
}

func (s *replicaSession) End(err error) {
	defer s.r.ev.notify()
	s.r.mu.Lock()
	defer s.r.mu.Unlock()
	s.log.ended, s.log.end = true, err
}

// ---------------------------------------------------------------------------
// The rig: certificates, spool, feed, replica, and the two sides running

type rig struct {
	t     *testing.T
	ev    *bcast
	pki   string // CA, master and replica
	spool *journal.Spool
	feed  *testFeed
	rep   *testReplica
	slog  *logBook // the Sender's log
	rlog  *logBook // the Receiver's log
}

func newRig(t *testing.T) *rig {
	t.Helper()
	ev := newBcast()
	spool, err := journal.OpenSpool(journal.SpoolOptions{Dir: t.TempDir(), Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { spool.Close() }) // after the Sender stops: cleanups run last first
	g := &rig{
		t: t, ev: ev, pki: pki(t, "master", "replica"), spool: spool,
		feed: &testFeed{spool: spool, epoch: masterEpoch, ev: ev},
		rep:  newTestReplica(t, ev, masterEpoch, nil),
		slog: &logBook{ev: ev}, rlog: &logBook{ev: ev},
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("%v\nsender log:%v\nreceiver log:%v", g.rep, g.slog, g.rlog)
		}
	})
	return g
}

func (g *rig) listen() net.Listener {
	g.t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		g.t.Fatal(err)
	}
	return ln
}

// serve runs a Receiver on ln until the returned stop is called, or the
// test ends. cfg's TLS (default: the replica's), Accept (default: the
// replica's) and Logger are filled in when unset.
func (g *rig) serve(ln net.Listener, cfg stream.ReceiverConfig) (stop func()) {
	g.t.Helper()
	if cfg.TLS == nil {
		cfg.TLS = serverConfig(g.t, nodeFiles(g.pki, "replica"))
	}
	if cfg.Accept == nil {
		cfg.Accept = g.rep.accept
	}
	cfg.Logger = g.rlog.logger()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- stream.NewReceiver(cfg).Serve(ctx, ln) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				g.t.Errorf("Serve: %v", err)
			}
		})
	}
	g.t.Cleanup(stop)
	return stop
}

// send runs a Sender until the returned stop is called, or the test ends;
// stop fails the test unless Run returns nil. cfg's TLS (default: the
// master's, expecting the replica), Hello, Feed, Logger and backoff are
// filled in when unset.
func (g *rig) send(addr string, cfg stream.SenderConfig) (*stream.Sender, func()) {
	g.t.Helper()
	cfg.Addr = addr
	if cfg.TLS == nil {
		cfg.TLS = clientConfig(g.t, nodeFiles(g.pki, "master"), "replica")
	}
	cfg.Hello = stream.Hello{Scenario: testScenario, Master: "master", Replica: "replica", Epoch: masterEpoch, Root: "/src"}
	if cfg.Feed == nil {
		cfg.Feed = g.feed
	}
	if cfg.MinBackoff == 0 {
		cfg.MinBackoff, cfg.MaxBackoff = time.Millisecond, 10*time.Millisecond
	}
	cfg.Logger = g.slog.logger()
	s := stream.NewSender(cfg)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				g.t.Errorf("Run returned %v after its context ended, want nil", err)
			}
		})
	}
	g.t.Cleanup(stop)
	return s, stop
}

// start serves the replica on a new listener and runs a Sender to it.
func (g *rig) start(scfg stream.SenderConfig, rcfg stream.ReceiverConfig) (*stream.Sender, func()) {
	g.t.Helper()
	ln := g.listen()
	g.serve(ln, rcfg)
	return g.send(ln.Addr().String(), scfg)
}

// finalStats stops the Sender and returns its Stats: Sent and SentBytes
// move after a frame's write returns, which may be after the replica has
// acknowledged it, so they are only certain once Run has returned.
func finalStats(s *stream.Sender, stop func()) stream.SenderStats {
	stop()
	return s.Stats()
}

// waitHeld waits until the replica holds up to seq. It fails at once when
// the Sender has reconnected more than reconnects times, with its error.
func (g *rig) waitHeld(seq uint64, reconnects int) {
	g.t.Helper()
	waitUntil(g.t, g.ev, fmt.Sprintf("the replica to hold #%d", seq), func() bool {
		if ends := g.slog.find(senderRetryMsg); len(ends) > reconnects {
			g.t.Fatalf("the Sender reconnected %d times, want at most %d; last: %v", len(ends), reconnects, ends[len(ends)-1].attrs["err"])
		}
		held, _ := g.rep.holding()
		return held >= seq
	})
}

// ---------------------------------------------------------------------------
// 1. Resume

// TestSessionResume: the replica says in its Welcome that it holds up to
// durable; the Feed starts the cursor right after it. The replica must be
// offered exactly the spool's batches from the one holding durable+1 on, in
// order (the straddling one whole, of which it keeps only what it lacks).
// When its Target refuses a batch the session ends; the Sender reconnects
// and resumes at the replica's new Welcome. Either way the replica ends with
// exactly #1..#N.
func TestSessionResume(t *testing.T) {
	const n, per = 40, 4 // batches #1-#4, #5-#8, ...
	tests := []struct {
		name    string
		durable uint64 // what the replica holds when the test starts
		live    int    // batches appended only once the session has started
		failAt  int    // the Target refuses the failAt-th batch offered; 0: none
	}{
		{name: "from nothing", durable: 0},
		{name: "at a batch boundary", durable: 8},
		{name: "inside a batch", durable: 10},
		{name: "caught up, then live batches", durable: n, live: 3},
		{name: "connection drops mid-stream", durable: 10, failAt: 3},
		{name: "connection drops at the straddling batch", durable: 10, failAt: 1},
		{name: "connection drops at a live batch", durable: n, live: 3, failAt: 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			batches, recs := makeBatches(t, 1, n+tt.live*per, per, 64)
			g := newRig(t)
			appendAll(t, g.spool, batches[:len(batches)-tt.live])
			g.rep = newTestReplica(t, g.ev, masterEpoch, recs[:tt.durable])
			g.rep.failAt = tt.failAt
			sender, stop := g.start(stream.SenderConfig{}, stream.ReceiverConfig{})

			if tt.live > 0 {
				waitUntil(t, g.ev, "the session to start", func() bool { return g.feed.sessions() > 0 })
				appendAll(t, g.spool, batches[len(batches)-tt.live:])
			}
			wantSessions := 1
			if tt.failAt > 0 {
				wantSessions = 2
			}
			last := recs[len(recs)-1].Seq
			g.waitHeld(last, wantSessions-1)
			waitUntil(t, g.ev, "the acknowledgement of the last batch", func() bool { return g.feed.lastAck().Durable == last })

			// What each session must have offered: everything from the
			// replica's Welcome on, up to the refused batch if any.
			var want [][]span
			held, offered := tt.durable, 0
			for {
				s := spansFrom(t, batches, held+1)
				if tt.failAt > offered && tt.failAt <= offered+len(s) {
					cut := tt.failAt - offered
					want = append(want, s[:cut])
					offered += cut
					if cut > 1 {
						held = s[cut-2].last
					}
					continue
				}
				want = append(want, s)
				break
			}
			if got := g.rep.numSessions(); got != len(want) {
				t.Fatalf("%d sessions, want %d", got, len(want))
			}
			// The Receiver calls End once the old session's goroutines are
			// done, which may be after the new session has finished.
			waitUntil(t, g.ev, "the refused sessions to end", func() bool {
				for i := range len(want) - 1 {
					if !g.rep.session(i).ended {
						return false
					}
				}
				return true
			})
			for i, w := range want {
				l := g.rep.session(i)
				if !slices.Equal(l.batches, w) {
					t.Errorf("session %d (welcome durable %d) offered %v, want %v", i, l.welcome.Durable, l.batches, w)
				}
				// A session that ends at a refusal may have had more batches
				// on their way; the one that completes sent just these.
				if h := g.feed.handedOut(i); len(h) < len(w) || !slices.Equal(h[:len(w)], w) || i == len(want)-1 && len(h) != len(w) {
					t.Errorf("session %d: the cursor handed the Sender %v, want %v first", i, h, w)
				}
				if i < len(want)-1 && (!l.ended || l.end == nil || !strings.Contains(l.end.Error(), errRefusedBatch)) {
					t.Errorf("session %d ended %v with %v, want the refusal", i, l.ended, l.end)
				}
			}
			_, got := g.rep.holding()
			sameRecords(t, got, recs)

			if st := sender.Stats(); st.Sessions != uint64(len(want)) || st.Reconnects != uint64(len(want)-1) || !st.Connected {
				t.Errorf("stats %+v, want %d sessions, %d reconnects, connected", st, len(want), len(want)-1)
			}
			if st := finalStats(sender, stop); st.Sent != last {
				t.Errorf("stats %+v after Run, want sent #%d", st, last)
			}
			// Whether LastError carries the replica's reason here depends on
			// whether the Sender was writing when the replica hung up (see
			// TestSessionCloseReason).
		})
	}
}

// ---------------------------------------------------------------------------
// 2. Reset

// TestSessionReset: when the Feed answers the Welcome with a Reset, the
// Target's Reset is called with its Epoch, From and Keep before any batch,
// and the batches from From on rebuild the replica (or, with Keep, repair
// it).
func TestSessionReset(t *testing.T) {
	const n, per = 20, 4
	tests := []struct {
		name     string
		epoch    uint64 // the replica's
		holds    int    // records the replica holds
		released uint64 // the master's spool has released up to this seq
		keep     bool   // the Feed keeps the replica's data
		manifest bool   // the Feed asks for the replica's manifest first
		wantFrom uint64
		wantKept int // records the replica keeps through the reset
	}{
		{name: "new replica", epoch: 0, holds: 0, wantFrom: 1},
		{name: "replica of another epoch", epoch: masterEpoch - 1, holds: 8, wantFrom: 1},
		{name: "master no longer holds what the replica lacks", epoch: masterEpoch, holds: 4, released: 8, wantFrom: 9},
		{name: "replica of an earlier master keeps its data", epoch: masterEpoch - 1, holds: 10, keep: true, wantFrom: 11, wantKept: 10},
		{name: "manifest asked before the reset", epoch: masterEpoch - 1, holds: 10, keep: true, manifest: true, wantFrom: 11, wantKept: 10},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			batches, recs := makeBatches(t, 1, n, per, 64)
			g := newRig(t)
			appendAll(t, g.spool, batches)
			if err := g.spool.Release(tt.released); err != nil {
				t.Fatal(err)
			}
			g.rep = newTestReplica(t, g.ev, tt.epoch, recs[:tt.holds])
			g.feed.keep = tt.keep
			if tt.manifest {
				g.feed.ask = &stream.ManifestRequest{BlockSize: 4096, Paths: []string{"a"}}
			}
			g.start(stream.SenderConfig{}, stream.ReceiverConfig{})
			g.waitHeld(n, 0)

			l := g.rep.session(0)
			if tt.manifest {
				if l.events[0] != "manifest" || len(l.asked) != 1 || l.asked[0].BlockSize != 4096 || !slices.Equal(l.asked[0].Paths, []string{"a"}) {
					t.Fatalf("the Target saw %v asked %+v, want the manifest request first", l.events, l.asked)
				}
				want := []string{"part 0, blocks of 4096", "part 1, blocks of 4096", "part 2, blocks of 4096"}
				if !slices.Equal(g.feed.parts, want) {
					t.Fatalf("the Feed got parts %q, want %q", g.feed.parts, want)
				}
				l.events = l.events[1:]
			}
			wantReset := stream.Reset{Epoch: masterEpoch, From: tt.wantFrom, Keep: tt.keep}
			if resets := g.feed.resetsSent(); len(resets) != 1 || resets[0] == nil || *resets[0] != wantReset {
				t.Fatalf("the Feed answered %v, want %+v", resets, wantReset)
			}
			if len(l.events) == 0 || l.events[0] != "reset" || slices.Contains(l.events[1:], "reset") {
				t.Fatalf("the Target saw %v, want one reset before any batch", l.events)
			}
			if !slices.Equal(l.resets, []stream.Reset{wantReset}) {
				t.Fatalf("the Target's Reset got %+v, want %+v", l.resets, wantReset)
			}
			if want := spansFrom(t, batches, tt.wantFrom); !slices.Equal(l.batches, want) {
				t.Fatalf("after the reset the Target was offered %v, want %v", l.batches, want)
			}
			_, got := g.rep.holding()
			sameRecords(t, got, recs[tt.wantFrom-1-uint64(tt.wantKept):])
			if epoch := g.rep.currentEpoch(); epoch != masterEpoch {
				t.Fatalf("replica epoch %d after the reset, want %d", epoch, masterEpoch)
			}
		})
	}
}

// ---------------------------------------------------------------------------
// 3. Flow control

// TestSessionWindow: a replica that acknowledges nothing holds the Sender
// back to its window.
//
// writeLoop asks the cursor for a batch only while the bytes sent and not
// acknowledged as received are under Window (inflightBytes >= Window means
// full), and then sends the batch whole. So when it asks, those bytes are
// < Window, and right after a send they are < Window + the size of that
// batch: the bound is Window plus one batch, less a byte. Here the batches
// are of equal size S and Window = 3S, so at most 3 batches are out, and
// with 3 out the window is full.
//
// The Target does not block in Receive, as a blocking Receive would stop
// the Receiver reading and leave an overrun unseen in the socket buffers.
// Instead it takes every batch as it arrives and holds back its
// acknowledgement: Progress reports received only what the test released.
// What the Sender has seen acknowledged is at most that, so at every Next
// (the Sender asking for another batch) and at every Receive (a batch
// arriving) the bytes handed out or offered before it, less the bytes
// released, must be under the window.
//
// The test releases a batch only once the Sender has shown that it stopped:
// wireTap sees a heartbeat frame from the Sender after its batch frames, and
// frames leave in order, so any batch the Sender chose to send before that
// heartbeat would show before it.
func TestSessionWindow(t *testing.T) {
	const n = 10
	batches, recs := makeBatches(t, 1, n, 1, 1000)
	size := len(batches[0])
	for i, b := range batches {
		if len(b) != size {
			t.Fatalf("batch %d has %d bytes, batch 0 %d: the test needs equal batches", i, len(b), size)
		}
	}
	const perWindow = 3
	window := int64(perWindow * size)

	g := newRig(t)
	appendAll(t, g.spool, batches)
	g.rep.hold, g.rep.window = true, window
	g.feed.onNext = func(before int64, b span) {
		if out := before - g.rep.releasedBytes(0); out >= window {
			t.Errorf("the Sender asked for batch %v with %d bytes unacknowledged, window %d", b, out, window)
		}
	}
	ln := g.listen()
	tap := newWireTap(t, ln, g.ev, size+stream.FrameHeaderSize+tlsRecordOverhead)
	g.serve(tap, stream.ReceiverConfig{})
	sender, stop := g.send(ln.Addr().String(), stream.SenderConfig{Window: window, Heartbeat: 5 * time.Millisecond})

	for released := 0; released+perWindow <= n; released++ {
		want := released + perWindow
		var sent int
		waitUntil(t, g.ev, fmt.Sprintf("a heartbeat from the Sender after batch %d", want), func() bool {
			if ends := g.slog.find(senderRetryMsg); len(ends) > 0 {
				t.Fatalf("the session ended: %v", ends[0].attrs["err"])
			}
			var ok bool
			ok, sent = tap.heartbeatAfter(want)
			return ok
		})
		if sent != want {
			t.Fatalf("with %d batches released the Sender sent %d before it stopped, want %d (wire %v)", released, sent, want, tap)
		}
		waitUntil(t, g.ev, fmt.Sprintf("batch %d at the Target", want), func() bool { return len(g.rep.session(0).batches) >= want })
		if h := g.feed.handedOut(0); len(h) != want {
			t.Fatalf("with %d batches released the Sender took %d from the cursor, want %d", released, len(h), want)
		}
		if out := int64(want*size) - g.rep.releasedBytes(0); out != window {
			t.Fatalf("stopped with %d bytes unacknowledged, want the window, %d", out, window)
		}
		g.rep.release(recs[released].Seq)
	}
	g.rep.release(recs[n-1].Seq)
	g.waitHeld(n, 0)
	waitUntil(t, g.ev, "the acknowledgement of the last batch", func() bool { return g.feed.lastAck().Received == n })
	_, got := g.rep.holding()
	sameRecords(t, got, recs)
	if st := finalStats(sender, stop); st.Sessions != 1 || st.Reconnects != 0 || st.SentBytes != uint64(n*size) {
		t.Fatalf("stats %+v, want one session and %d bytes sent", st, n*size)
	}
}

// ---------------------------------------------------------------------------
// 4. Heartbeats

// TestSessionHeartbeats: with nothing to send, both sides send heartbeats
// and the session stays up past the timeout. Heartbeat 20ms on both sides;
// the replica holds everything the spool has.
//
// The heartbeats are counted on the wire by wireTap. The Sender's idle
// heartbeats each follow a cursor Next that waited a whole Heartbeat (the
// Feed counts those too), and the Receiver's come from a ticker that cannot
// tick faster than Heartbeat, so Timeout/Heartbeat+2 heartbeats each way
// prove that the session lived longer than Timeout with no batch, without
// the test reading a clock. Had either side stopped sending them (or sent
// them less often than Timeout), the other would have hung up before the
// count was reached, and End would have been called first.
//
// Timeout is 1s rather than 200ms: whether a side hears from the other
// within Timeout is a matter of real time, and with 200ms (and 500ms) the
// test failed a few runs in a hundred when the two cores were overloaded,
// a goroutine starved that long being a timeout however often it means to
// send.
func TestSessionHeartbeats(t *testing.T) {
	const (
		heartbeat = 20 * time.Millisecond
		timeout   = time.Second
		want      = int(timeout/heartbeat) + 2
	)
	batches, recs := makeBatches(t, 1, 8, 4, 64)
	g := newRig(t)
	appendAll(t, g.spool, batches)
	g.rep = newTestReplica(t, g.ev, masterEpoch, recs)
	ln := g.listen()
	tap := newWireTap(t, ln, g.ev, 0)
	g.serve(tap, stream.ReceiverConfig{Heartbeat: heartbeat, Timeout: timeout})
	sender, _ := g.send(ln.Addr().String(), stream.SenderConfig{Heartbeat: heartbeat, Timeout: timeout})

	waitUntil(t, g.ev, fmt.Sprintf("%d heartbeats each way", want), func() bool {
		if l := g.rep.session(0); l.ended {
			t.Fatalf("the session ended (%v) with heartbeats %v; wire: %v", l.end, fmt.Sprint(tap.heartbeats()), tap)
		}
		if n := g.slog.count(senderRetryMsg); n > 0 {
			t.Fatalf("the Sender reconnected; wire: %v", tap)
		}
		from, to := tap.heartbeats()
		return from >= want && to >= want && g.feed.idleNexts() >= want
	})
	st := sender.Stats()
	if !st.Connected || st.Sessions != 1 || st.Reconnects != 0 || g.rep.numSessions() != 1 {
		t.Fatalf("stats %+v, replica sessions %d: want one session still up", st, g.rep.numSessions())
	}
	if l := g.rep.session(0); len(l.batches) != 0 || l.ended {
		t.Fatalf("the Target saw %v and ended %v, want an idle session", l.batches, l.ended)
	}
}

// ---------------------------------------------------------------------------
// 5. Reconnect

// TestSessionReconnect: a Sender whose replica is not listening yet keeps
// dialling with a backoff that doubles from MinBackoff to MaxBackoff; once
// the replica listens a session starts and the reconnects stop; when the
// replica goes away the backoff starts again from MinBackoff; stopping the
// Sender's context makes Run return nil.
//
// Each failed attempt is seen in the Sender's log, whose retry_in attribute
// gives the backoff chosen.
func TestSessionReconnect(t *testing.T) {
	const minB, maxB = time.Millisecond, 8 * time.Millisecond
	g := newRig(t)
	batches, recs := makeBatches(t, 1, 8, 4, 64)
	appendAll(t, g.spool, batches[:1])

	ln := g.listen()
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now
	sender, stopSender := g.send(addr, stream.SenderConfig{MinBackoff: minB, MaxBackoff: maxB})

	wantBackoff := []time.Duration{minB, 2 * minB, 4 * minB, maxB, maxB, maxB}
	waitUntil(t, g.ev, fmt.Sprintf("%d failed dials", len(wantBackoff)), func() bool { return g.slog.count(senderRetryMsg) >= len(wantBackoff) })
	for i, e := range g.slog.find(senderRetryMsg)[:len(wantBackoff)] {
		if got := e.attrs["retry_in"].Duration(); got != wantBackoff[i] {
			t.Fatalf("attempt %d: retry in %v, want %v", i, got, wantBackoff[i])
		}
		if err := e.attrs["err"].String(); !strings.Contains(err, "connection refused") {
			t.Fatalf("attempt %d: %s, want a refused dial", i, err)
		}
	}
	if st := sender.Stats(); st.Connected || st.Sessions != 0 || st.Reconnects < uint64(len(wantBackoff)) || !strings.Contains(st.LastError, "connection refused") {
		t.Fatalf("stats %+v before the replica listens", st)
	}

	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("listening again on %s: %v", addr, err)
	}
	stopReceiver := g.serve(ln, stream.ReceiverConfig{})
	waitUntil(t, g.ev, "the session to start", func() bool {
		for _, e := range g.slog.find(senderRetryMsg) {
			// A dial refused just before Listen may be logged after it.
			if err := e.attrs["err"].String(); !strings.Contains(err, "connection refused") {
				t.Fatalf("the Sender failed with the replica listening: %s", err)
			}
		}
		return g.feed.nextCalls() > 0
	})
	st := sender.Stats()
	if !st.Connected || st.Sessions != 1 {
		t.Fatalf("stats %+v once the replica listens, want connected", st)
	}
	// The session carries on: a batch appended now arrives, and no attempt
	// was made meanwhile.
	appendAll(t, g.spool, batches[1:])
	g.waitHeld(recs[len(recs)-1].Seq, g.slog.count(senderRetryMsg))
	if st2 := sender.Stats(); st2.Reconnects != st.Reconnects || !st2.Connected || st2.Sessions != 1 {
		t.Fatalf("stats %+v after the batches, want %d reconnects as at the start of the session", st2, st.Reconnects)
	}
	_, got := g.rep.holding()
	sameRecords(t, got, recs)

	// The replica goes away: after a session, the backoff starts over.
	before := g.slog.count(senderRetryMsg)
	stopReceiver()
	waitUntil(t, g.ev, "the Sender to notice the replica is gone", func() bool { return g.slog.count(senderRetryMsg) > before })
	if got := g.slog.find(senderRetryMsg)[before].attrs["retry_in"].Duration(); got != minB {
		t.Fatalf("after a session the Sender retries in %v, want MinBackoff %v", got, minB)
	}
	stopSender() // fails the test unless Run returns nil
	if st := sender.Stats(); st.Connected {
		t.Fatalf("stats %+v after Run returned", st)
	}
}

// ---------------------------------------------------------------------------
// 6. Bandwidth limit

// TestSessionBandwidth: every byte written to the replica goes through the
// Sender's token bucket, and a frame larger than the bucket's burst goes
// through in pieces of at most the burst (rate.Limiter.WaitN refuses more
// than the burst outright, which would end the session).
func TestSessionBandwidth(t *testing.T) {
	tests := []struct {
		name       string
		limit      rate.Limit
		burst      int
		n, per, sz int // records, records per batch, bytes of data per record
	}{
		// 30 batches of ~10 KiB, well under the full bucket of 1 MiB
		// refilled at one token a second: nothing waits, and the bucket
		// must have lost at least the batch bytes (frame headers, Hello and
		// heartbeats come on top, minus a token per second of the test).
		{name: "writes draw on the bucket", limit: 1, burst: 1 << 20, n: 30, per: 1, sz: 10 << 10},
		{name: "a frame larger than the burst", limit: 1 << 30, burst: 64 << 10, n: 1, per: 1, sz: 1 << 20},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			batches, recs := makeBatches(t, 1, tt.n, tt.per, tt.sz)
			var batchBytes int
			for _, b := range batches {
				batchBytes += len(b)
			}
			g := newRig(t)
			appendAll(t, g.spool, batches)
			lim := rate.NewLimiter(tt.limit, tt.burst) // starts full
			sender, stop := g.start(stream.SenderConfig{Limit: lim}, stream.ReceiverConfig{})
			g.waitHeld(uint64(tt.n), 0)

			if drop := float64(tt.burst) - lim.Tokens(); tt.limit == 1 && drop < float64(batchBytes) {
				t.Fatalf("the bucket lost %.0f tokens, want at least the %d batch bytes written", drop, batchBytes)
			}
			_, got := g.rep.holding()
			sameRecords(t, got, recs)
			if st := finalStats(sender, stop); st.SentBytes != uint64(batchBytes) || st.Reconnects != 0 || st.LastError != "" {
				t.Fatalf("stats %+v, want %d bytes sent in one session", st, batchBytes)
			}
		})
	}
}

// ---------------------------------------------------------------------------
// 7. Certificates of another CA

// TestSessionForeignCA: a master whose certificate comes from another CA is
// refused by the Receiver in the TLS handshake, before any Accept; a
// replica whose certificate comes from another CA is refused by the Sender,
// whose LastError says why.
func TestSessionForeignCA(t *testing.T) {
	tests := []struct {
		name          string
		master        func(scenario, other string) stream.TLSFiles
		replica       func(scenario, other string) stream.TLSFiles
		wantReceiver  string // in the Receiver's logged error
		wantLastError string // in the Sender's LastError
	}{
		{
			name: "master of another CA",
			master: func(scenario, other string) stream.TLSFiles {
				f := nodeFiles(other, "master")
				f.CA = nodeFiles(scenario, "master").CA // it trusts the replica
				return f
			},
			replica:       func(scenario, _ string) stream.TLSFiles { return nodeFiles(scenario, "replica") },
			wantReceiver:  "refused before any data: tls: failed to verify certificate: x509: certificate signed by unknown authority",
			wantLastError: "certificate",
		},
		{
			name:   "replica of another CA",
			master: func(scenario, _ string) stream.TLSFiles { return nodeFiles(scenario, "master") },
			replica: func(scenario, other string) stream.TLSFiles {
				f := nodeFiles(other, "replica")
				f.CA = nodeFiles(scenario, "replica").CA // it trusts the master
				return f
			},
			wantReceiver:  "refused before any data",
			wantLastError: `stream: server certificate "replica": x509: certificate signed by unknown authority`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := newRig(t)
			other := pki(t, "master", "replica") // same names, another CA
			batches, _ := makeBatches(t, 1, 4, 4, 64)
			appendAll(t, g.spool, batches)
			ln := g.listen()
			stopReceiver := g.serve(ln, stream.ReceiverConfig{TLS: serverConfig(t, tt.replica(g.pki, other))})
			sender, stopSender := g.send(ln.Addr().String(), stream.SenderConfig{
				TLS: clientConfig(t, tt.master(g.pki, other), "replica"),
			})
			waitUntil(t, g.ev, "a refusal on both sides", func() bool {
				if n := g.rep.acceptCalls(); n != 0 {
					t.Fatalf("Accept was called %d times", n)
				}
				return g.slog.count(senderRetryMsg) > 0 && g.rlog.count(receiverEndMsg) > 0
			})
			stopSender()
			stopReceiver() // Serve returns once every connection is done with

			if err := g.rlog.find(receiverEndMsg)[0].attrs["err"].String(); !strings.Contains(err, tt.wantReceiver) {
				t.Errorf("the Receiver ended the connection with %q, want %q", err, tt.wantReceiver)
			}
			if st := sender.Stats(); !strings.Contains(st.LastError, tt.wantLastError) || st.Sessions != 0 {
				t.Errorf("stats %+v, want no session and LastError containing %q", st, tt.wantLastError)
			}
			if n := g.rep.acceptCalls(); n != 0 {
				t.Errorf("Accept was called %d times", n)
			}
			if n := g.feed.sessions(); n != 0 {
				t.Errorf("Feed.Start was called %d times", n)
			}
		})
	}
}

// ---------------------------------------------------------------------------
// 8. The replica's reason reaches the master

// TestSessionCloseReason: when the replica ends a session, its Close frame
// carries the reason to the Sender's LastError.
//
// In both cases the Sender has nothing more to write when the replica hangs
// up (the spool holds one batch, and the Sender's heartbeat is an hour), so
// the replica reads everything the Sender sent before it closes. A Sender
// still writing when the replica hangs up may report the reset connection
// instead of the reason: see TestSessionCloseReasonWhileSending.
func TestSessionCloseReason(t *testing.T) {
	const refusal = `replica: scenario s1 takes master "master-2", not "master"`
	tests := []struct {
		name   string
		refuse error // Accept refuses with it
		failAt int   // the Target refuses this batch
		want   string
	}{
		{name: "Accept refuses", refuse: errors.New(refusal), want: refusal},
		{name: "Receive refuses", failAt: 1, want: errRefusedBatch},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := newRig(t)
			batches, _ := makeBatches(t, 1, 4, 4, 64)
			appendAll(t, g.spool, batches)
			g.rep.refuse, g.rep.failAt = tt.refuse, tt.failAt
			sender, _ := g.start(stream.SenderConfig{Heartbeat: time.Hour}, stream.ReceiverConfig{})
			waitUntil(t, g.ev, "the Sender to see the session end", func() bool { return g.slog.count(senderRetryMsg) > 0 })

			err := g.slog.find(senderRetryMsg)[0].attrs["err"].String()
			want := "stream: peer closed the session: " + tt.want + ": " + stream.ErrClosedByPeer.Error()
			if !strings.Contains(err, want) {
				t.Fatalf("the Sender's session ended with %q, want %q", err, want)
			}
			if st := sender.Stats(); !strings.Contains(st.LastError, want) {
				t.Fatalf("LastError %q, want it to contain %q", st.LastError, want)
			}
		})
	}
}
