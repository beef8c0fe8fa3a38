package stream_test

// Faults of the session layer found while writing session_test.go, each
// stated as the behaviour the package documents: a Close reason racing the
// sender's writes, frames slower than the timeout on a paced link, stopping
// during a paced frame, a limiter with no burst, and a Feed that takes long
// to start.

import (
	"context"
	"strings"
	"testing"
	"time"

	"golang.org/x/time/rate"

	"github.com/writecap/writecap/stream"
)

// TestSessionCloseReasonWhileSending: the replica refuses the first batch
// while the Sender still has many on their way. Its Close, sent before it
// hangs up, must be what the Sender reports, not the reset or broken pipe
// its own writes then meet.
func TestSessionCloseReasonWhileSending(t *testing.T) {
	g := newRig(t)
	batches, _ := makeBatches(t, 1, 400, 1, 4<<10)
	appendAll(t, g.spool, batches)
	g.rep.failAt = 1
	g.start(stream.SenderConfig{}, stream.ReceiverConfig{})
	waitUntil(t, g.ev, "the Sender to see the session end", func() bool { return g.slog.count(senderRetryMsg) > 0 })
	if err := g.slog.find(senderRetryMsg)[0].attrs["err"].String(); !strings.Contains(err, errRefusedBatch) {
		t.Fatalf("the Sender's session ended with %q, want the replica's reason %q", err, errRefusedBatch)
	}
}

// TestSessionPacedFrameLongerThanTimeout: with a bandwidth limit, a batch
// frame that takes longer than Timeout to pace out still arrives: the
// timeout bounds a time without progress, not a frame.
func TestSessionPacedFrameLongerThanTimeout(t *testing.T) {
	g := newRig(t)
	batches, recs := makeBatches(t, 1, 1, 1, 160<<10)
	appendAll(t, g.spool, batches)
	const timeout = time.Second
	g.start(stream.SenderConfig{Limit: rate.NewLimiter(64<<10, 16<<10), Heartbeat: timeout / 10, Timeout: timeout},
		stream.ReceiverConfig{Heartbeat: timeout / 10, Timeout: timeout})
	g.waitHeld(recs[0].Seq, 0)
}

// TestSessionStopWhilePaced: stopping a Sender while it paces a frame
// through the bandwidth limit returns at once; the "master stopping" Close
// does not wait for the frame.
func TestSessionStopWhilePaced(t *testing.T) {
	g := newRig(t)
	batches, _ := makeBatches(t, 1, 1, 1, 1<<20)
	appendAll(t, g.spool, batches)
	ln := g.listen()
	tap := newWireTap(t, ln, g.ev, 0)
	g.serve(tap, stream.ReceiverConfig{Timeout: 30 * time.Second})
	_, stop := g.send(ln.Addr().String(), stream.SenderConfig{Limit: rate.NewLimiter(64<<10, 64<<10), Timeout: 30 * time.Second})
	waitUntil(t, g.ev, "the batch to be on its way", func() bool { return tap.bytesFromMaster() > 32<<10 })
	// At 64 KiB/s the 1 MiB frame takes 16 s to pace out: Run must return
	// with most of it still unsent, not after it.
	stop()
	if sent := tap.bytesFromMaster(); sent >= 1<<20 {
		t.Fatalf("Run returned after the whole paced frame went (%d bytes sent)", sent)
	}
}

// TestSessionLimiterBurstZero: a limiter with a burst of 0, such as
// rate.NewLimiter(rate.Inf, 0), which x/time/rate documents as allowing
// every event, neither spins nor blocks the Sender.
func TestSessionLimiterBurstZero(t *testing.T) {
	g := newRig(t)
	batches, _ := makeBatches(t, 1, 4, 4, 64)
	appendAll(t, g.spool, batches)
	ln := g.listen()
	g.serve(ln, stream.ReceiverConfig{Timeout: 200 * time.Millisecond})
	// Not g.send: its cleanup would wait for Run for ever.
	cfg := stream.SenderConfig{
		Addr: ln.Addr().String(), TLS: clientConfig(t, nodeFiles(g.pki, "master"), "replica"),
		Hello: stream.Hello{Scenario: testScenario, Master: "master", Replica: "replica", Epoch: masterEpoch},
		Feed:  g.feed, Limit: rate.NewLimiter(rate.Inf, 0), Logger: g.slog.logger(),
	}
	go stream.NewSender(cfg).Run(context.Background())
	waitUntil(t, g.ev, "the session to start, or the replica to give up on the Hello", func() bool {
		if ends := g.rlog.find(receiverEndMsg); len(ends) > 0 {
			t.Fatalf("the replica gave up: %v", ends[0].attrs["err"])
		}
		return g.feed.sessions() > 0
	})
}

// TestSessionQuietDuringFeedStart: while Feed.Start waits (for a full copy
// to begin, as package master's may), the Sender keeps the session alive
// with heartbeats.
func TestSessionQuietDuringFeedStart(t *testing.T) {
	const (
		heartbeat = 20 * time.Millisecond
		timeout   = time.Second
		want      = int(timeout/heartbeat) + 2
	)
	g := newRig(t)
	batches, recs := makeBatches(t, 1, 4, 4, 64)
	appendAll(t, g.spool, batches)
	ln := g.listen()
	tap := newWireTap(t, ln, g.ev, 0)
	var hungUp error
	g.feed.startWait = func(ctx context.Context) {
		if g.feed.sessions() > 0 {
			return // only the first session waits
		}
		from, _ := tap.heartbeats()
		for {
			ch := g.ev.wait()
			if l := g.rep.session(0); l.ended {
				hungUp = l.end
				return
			}
			if now, _ := tap.heartbeats(); now-from >= want {
				return
			}
			select {
			case <-ch:
			case <-ctx.Done():
				return
			}
		}
	}
	g.serve(tap, stream.ReceiverConfig{Heartbeat: heartbeat, Timeout: timeout})
	g.send(ln.Addr().String(), stream.SenderConfig{Heartbeat: heartbeat, Timeout: timeout})
	waitUntil(t, g.ev, "Start to return", func() bool { return g.feed.sessions() > 0 })
	if hungUp != nil {
		t.Fatalf("the replica hung up while Feed.Start waited: %v", hungUp)
	}
	g.waitHeld(recs[len(recs)-1].Seq, 0)
}
