package replica

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/writecap/writecap/certs"
	"github.com/writecap/writecap/journal"
	"github.com/writecap/writecap/monitor"
	"github.com/writecap/writecap/stream"
)

// harness is a replica served in-process over real TLS on loopback.
type harness struct {
	root, certs string
	addr        net.Addr
	metrics     string
	log         *logBuffer
}

type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func tlsFiles(dir, node string) stream.TLSFiles {
	return stream.TLSFiles{CA: filepath.Join(dir, "ca.crt"), Cert: filepath.Join(dir, node+".crt"), Key: filepath.Join(dir, node+".key")}
}

func startReplica(t *testing.T) *harness {
	t.Helper()
	base := t.TempDir()
	h := &harness{root: filepath.Join(base, "root"), certs: filepath.Join(base, "certs"), log: &logBuffer{}, metrics: freeAddr(t)}
	if _, err := certs.Create(certs.Options{Dir: h.certs, Nodes: []string{"master", "replica"}, Days: 1}); err != nil {
		t.Fatal(err)
	}
	tc, err := stream.ServerConfig(tlsFiles(h.certs, "replica"))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan net.Addr, 1)
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, Config{
			Listen: "127.0.0.1:0", Name: "replica", TLS: tc, Metrics: h.metrics,
			Scenarios: []Scenario{{ID: "s", Root: h.root, State: filepath.Join(base, "state")}},
			Logger:    slog.New(slog.NewTextHandler(h.log, nil)),
			Ready:     func(a net.Addr) { ready <- a },
		})
	}()
	select {
	case h.addr = <-ready:
	case err := <-done:
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
	return h
}

// dial connects as a master with a certificate of dir's CA.
func (h *harness) dial(t *testing.T, dir string) *tls.Conn {
	t.Helper()
	tc, err := stream.ClientConfig(tlsFiles(dir, "master"), "replica")
	if err != nil {
		t.Fatal(err)
	}
	c, err := tls.Dial("tcp", h.addr.String(), tc)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(30 * time.Second))
	return c
}

// session performs the handshake and a reset, then stores one good batch.
func (h *harness) session(t *testing.T) (*tls.Conn, *stream.FrameWriter, *stream.FrameReader) {
	t.Helper()
	c := h.dial(t, h.certs)
	fw, fr := stream.NewFrameWriter(c), stream.NewFrameReader(c)
	if err := fw.WriteMsg(&stream.Hello{Version: stream.Version, Scenario: "s", Master: "master", Replica: "replica", Epoch: 7}); err != nil {
		t.Fatal(err)
	}
	if m := readMsg(t, fr); m.Type() != stream.FrameWelcome {
		t.Fatalf("got %s, want welcome", m.Type())
	}
	if err := fw.WriteMsg(&stream.Reset{Epoch: 7, From: 1}); err != nil {
		t.Fatal(err)
	}
	if err := fw.WriteFrame(stream.FrameBatch, batch(t, journal.Record{Seq: 1, Op: journal.OpMkdir, Path: "kept", Mode: 0o755})); err != nil {
		t.Fatal(err)
	}
	waitApplied(t, h, 1)
	return c, fw, fr
}

func readMsg(t *testing.T, fr *stream.FrameReader) stream.Message {
	t.Helper()
	for {
		ft, body, err := fr.ReadFrame()
		if err != nil {
			t.Fatal(err)
		}
		m, err := stream.DecodeMsg(ft, body)
		if err != nil {
			t.Fatal(err)
		}
		if m.Type() != stream.FrameHeartbeat && m.Type() != stream.FrameAck {
			return m
		}
	}
}

func batch(t *testing.T, recs ...journal.Record) []byte {
	t.Helper()
	b, err := journal.NewEncoder(journal.EncoderOptions{}).AppendBatch(nil, recs)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func (h *harness) status(t *testing.T) monitor.Scenario {
	t.Helper()
	r, err := monitor.Fetch(context.Background(), h.metrics)
	if err != nil {
		t.Fatal(err)
	}
	return r.Scenarios[0]
}

// waitApplied polls the status document: the replica runs in goroutines
// this test cannot join.
func waitApplied(t *testing.T, h *harness, seq uint64) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); h.status(t).Applied < seq; {
		if time.Now().After(deadline) {
			t.Fatalf("replica never applied #%d: %+v", seq, h.status(t))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// closedWith reads until the replica hangs up and returns the reason it
// gave, if any.
func closedWith(t *testing.T, fr *stream.FrameReader) string {
	t.Helper()
	for {
		ft, body, err := fr.ReadFrame()
		if err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) || stream.IsTruncated(err) || strings.Contains(err.Error(), "reset by peer") {
				return ""
			}
			t.Fatalf("reading until the replica hangs up: %v", err)
		}
		if ft == stream.FrameClose {
			m, err := stream.DecodeMsg(ft, body)
			if err != nil {
				t.Fatal(err)
			}
			return m.(*stream.Close).Reason
		}
	}
}

func frameBytes(t *testing.T, ft stream.FrameType, body []byte) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := stream.NewFrameWriter(&b).WriteFrame(ft, body); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// TestBadInput: after a good batch, each kind of bad input closes the
// session with a log line naming the reason, and the replica's data and
// sequence numbers stay as they were.
func TestBadInput(t *testing.T) {
	h := startReplica(t)
	_, _, _ = h.session(t)
	wrongCRC := frameBytes(t, stream.FrameBatch, batch(t, journal.Record{Seq: 2, Op: journal.OpMkdir, Path: "crc", Mode: 0o755}))
	wrongCRC[len(wrongCRC)-1] ^= 0xff
	wrongVersion := frameBytes(t, stream.FrameHeartbeat, nil)
	wrongVersion[2] = 99
	binary.LittleEndian.PutUint32(wrongVersion[8:], 0)
	truncated := frameBytes(t, stream.FrameBatch, batch(t, journal.Record{Seq: 2, Op: journal.OpMkdir, Path: "cut", Mode: 0o755}))
	truncated = truncated[:len(truncated)/2]
	tests := []struct {
		name string
		send func(t *testing.T, c *tls.Conn, fw *stream.FrameWriter)
		log  string // what the replica's log must say
	}{
		{"random bytes", func(t *testing.T, c *tls.Conn, _ *stream.FrameWriter) {
			c.Write([]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"))
		}, "corrupt frame"},
		{"wrong crc", func(t *testing.T, c *tls.Conn, _ *stream.FrameWriter) { c.Write(wrongCRC) }, "crc"},
		{"unknown version", func(t *testing.T, c *tls.Conn, _ *stream.FrameWriter) { c.Write(wrongVersion) }, "unsupported protocol version"},
		{"truncated frame", func(t *testing.T, c *tls.Conn, _ *stream.FrameWriter) {
			c.Write(truncated)
			c.CloseWrite()
		}, "truncated frame"},
		{"record escaping the root", func(t *testing.T, _ *tls.Conn, fw *stream.FrameWriter) {
			fw.WriteFrame(stream.FrameBatch, batch(t,
				journal.Record{Seq: 2, Op: journal.OpMkdir, Path: "fine", Mode: 0o755},
				journal.Record{Seq: 3, Op: journal.OpWrite, Path: "../escaped", Data: []byte("x")}))
		}, "path escapes root"},
		{"gap in sequence numbers", func(t *testing.T, _ *tls.Conn, fw *stream.FrameWriter) {
			fw.WriteFrame(stream.FrameBatch, batch(t, journal.Record{Seq: 5, Op: journal.OpMkdir, Path: "gap", Mode: 0o755}))
		}, "holds up to #1"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := h.status(t)
			mark := len(h.log.String())
			c, fw, fr := h.resume(t)
			tc.send(t, c, fw)
			closedWith(t, fr)
			h.waitLog(t, mark, tc.log)
			after := h.status(t)
			if after.Received != before.Received || after.Applied != before.Applied || after.Durable != before.Durable || after.Epoch != before.Epoch {
				t.Errorf("sequence numbers moved: before %+v, after %+v", before, after)
			}
			ents, err := os.ReadDir(h.root)
			if err != nil {
				t.Fatal(err)
			}
			if len(ents) != 1 || ents[0].Name() != "kept" {
				t.Errorf("replica root changed: %v", ents)
			}
		})
	}
}

// waitLog waits for the replica to log want after byte mark of its log: it
// logs a session's end after closing the connection.
func (h *harness) waitLog(t *testing.T, mark int, want string) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); !strings.Contains(h.log.String()[mark:], want); {
		if time.Now().After(deadline) {
			t.Fatalf("replica log does not say %q:\n%s", want, h.log.String()[mark:])
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// resume opens a session that continues the replica's epoch.
func (h *harness) resume(t *testing.T) (*tls.Conn, *stream.FrameWriter, *stream.FrameReader) {
	t.Helper()
	c := h.dial(t, h.certs)
	fw, fr := stream.NewFrameWriter(c), stream.NewFrameReader(c)
	if err := fw.WriteMsg(&stream.Hello{Version: stream.Version, Scenario: "s", Master: "master", Replica: "replica", Epoch: 7}); err != nil {
		t.Fatal(err)
	}
	w, ok := readMsg(t, fr).(*stream.Welcome)
	if !ok || w.Epoch != 7 || w.Durable != 1 {
		t.Fatalf("welcome %+v, want epoch 7 durable 1", w)
	}
	return c, fw, fr
}

// TestRefused: sessions the replica must refuse, and why it says so.
func TestRefused(t *testing.T) {
	h := startReplica(t)
	other := filepath.Join(t.TempDir(), "other")
	if _, err := certs.Create(certs.Options{Dir: other, Nodes: []string{"master"}, Days: 1}); err != nil {
		t.Fatal(err)
	}
	t.Run("certificate of another CA", func(t *testing.T) {
		tc, err := stream.ClientConfig(tlsFiles(other, "master"), "")
		if err != nil {
			t.Fatal(err)
		}
		tc.InsecureSkipVerify = true // only the replica's check is under test
		c, err := tls.Dial("tcp", h.addr.String(), tc)
		if err == nil {
			// TLS 1.3 reports the client certificate's rejection on read.
			_, err = c.Read(make([]byte, 1))
			c.Close()
		}
		if err == nil {
			t.Fatal("replica accepted a master certificate from another CA")
		}
		h.waitLog(t, 0, "refused before any data")
	})
	tests := []struct {
		name   string
		hello  stream.Hello
		reason string
	}{
		{"unknown scenario", stream.Hello{Version: stream.Version, Scenario: "nope"}, `no scenario "nope"`},
		{"other replica", stream.Hello{Version: stream.Version, Scenario: "s", Replica: "someone-else"}, `not "someone-else"`},
		{"newer protocol", stream.Hello{Version: stream.Version + 1, Scenario: "s"}, "protocol version"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := h.dial(t, h.certs)
			fw, fr := stream.NewFrameWriter(c), stream.NewFrameReader(c)
			if err := fw.WriteMsg(&tc.hello); err != nil {
				t.Fatal(err)
			}
			if reason := closedWith(t, fr); !strings.Contains(reason, tc.reason) {
				t.Errorf("close reason %q, want it to say %q", reason, tc.reason)
			}
		})
	}
}
