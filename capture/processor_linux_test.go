package capture

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/writecap/writecap/bpf"
	"github.com/writecap/writecap/internal/testenv"
	"github.com/writecap/writecap/internal/treecmp"
	"github.com/writecap/writecap/journal"
	"github.com/writecap/writecap/replay"
)

// applySink applies what capture hands on to a replica.
type applySink struct{ app *replay.Applier }

func newApplySink(t *testing.T, dst string) applySink {
	t.Helper()
	app, err := replay.Open(dst, replay.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { app.Close() })
	return applySink{app}
}

func (s applySink) Write(recs []journal.Record) error {
	for i := range recs {
		if err := s.app.Apply(&recs[i]); err != nil {
			return err
		}
	}
	return nil
}

// gateSink is an applySink that, from the call that creates hold, keeps
// capture waiting (in Write) until open is closed, so that the test can
// change the tree before capture processes the changes.
type gateSink struct {
	applySink
	hold, mark string
	held, open chan struct{}
	seen       chan struct{} // closed once a record creates mark
}

func newGateSink(t *testing.T, dst, hold, mark string) *gateSink {
	t.Helper()
	return &gateSink{applySink: newApplySink(t, dst), hold: hold, mark: mark,
		held: make(chan struct{}), open: make(chan struct{}), seen: make(chan struct{})}
}

func (s *gateSink) Write(recs []journal.Record) error {
	if err := s.applySink.Write(recs); err != nil {
		return err
	}
	for _, r := range recs {
		switch {
		case r.Op == journal.OpCreate && r.Path == s.mark:
			close(s.seen)
			s.mark = "" // the last walk creates it again
		case r.Op == journal.OpCreate && r.Path == s.hold:
			close(s.held)
			s.hold = ""
			<-s.open
		}
	}
	return nil
}

// TestDirectoryRenamedBeforeItsMkdirWasProcessed: capture learns a new
// directory's inode and attributes from the master when it processes the
// mkdir, which carries only the mode the caller asked for. When the name
// had moved on by then, the replica kept that mode (0777 here, where the
// master has 02755 from the umask and the setgid parent) until the next
// walk, which a quiet tree never got until the agent stopped.
func TestDirectoryRenamedBeforeItsMkdirWasProcessed(t *testing.T) {
	testenv.RequireBPF(t)
	src, dst := t.TempDir(), t.TempDir()
	if err := os.Mkdir(filepath.Join(src, "p"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := unix.Chmod(filepath.Join(src, "p"), 0o2775); err != nil {
		t.Fatal(err)
	}
	s, err := New(Config{Root: src})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	sink := newGateSink(t, dst, "hold", "end")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx, sink) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()

	child(t, "create %s", filepath.Join(src, "hold"))
	<-sink.held
	child(t, "mkdir-rename %s 777 %s", filepath.Join(src, "p/d"), filepath.Join(src, "p/e"))
	child(t, "create %s", filepath.Join(src, "end"))
	close(sink.open)
	<-sink.seen

	var st unix.Stat_t
	if err := unix.Lstat(filepath.Join(src, "p/e"), &st); err != nil || st.Mode&07777 != 0o2755 {
		t.Fatalf("master's p/e: mode %#o, %v; want 02755", st.Mode&07777, err)
	}
	// Compared before Run ends: its last walk would put it right anyway.
	treecmp.AssertEqual(t, src, dst, treecmp.Options{Owners: true})
}

// copiedTree loads capture for src and copies src to dst through a
// processor the test drives itself.
func copiedTree(t *testing.T, src, dst string) (*Source, *processor) {
	t.Helper()
	s, err := New(Config{Root: src})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	p, err := newProcessor(s, newApplySink(t, dst))
	if err != nil {
		t.Fatal(err)
	}
	if err := p.initial(); err != nil {
		t.Fatal(err)
	}
	return s, p
}

// walkNow walks the master's names and hands the records on.
func walkNow(t *testing.T, p *processor) {
	t.Helper()
	p.needReconcile("the test's changes", false)
	if err := p.runReconcile(); err != nil {
		t.Fatal(err)
	}
	if err := p.flush(); err != nil {
		t.Fatal(err)
	}
}

// TestWalkSendsAttributesTheReplicaWasNotSent: a walk of the names compares
// each entry's mode and owner with what the replica was sent. A chown that
// capture processes after the walk found a directory exchange resolves its
// name against the exchanged names and reaches the other file; x/f's new
// group reached the replica only with the last walk, at stop.
func TestWalkSendsAttributesTheReplicaWasNotSent(t *testing.T) {
	testenv.RequireBPF(t)
	src, dst := t.TempDir(), t.TempDir()
	for _, d := range []string{"a", "x"} {
		if err := os.Mkdir(filepath.Join(src, d), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(src, d, "f"), []byte(d), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// The test's own changes are not captured: it plays the processor's
	// part, so that the walk runs before the chown is processed.
	_, p := copiedTree(t, src, dst)
	if err := unix.Chown(filepath.Join(src, "x/f"), -1, 100); err != nil {
		t.Fatal(err)
	}
	if err := unix.Renameat2(unix.AT_FDCWD, filepath.Join(src, "a"), unix.AT_FDCWD, filepath.Join(src, "x"), unix.RENAME_EXCHANGE); err != nil {
		t.Fatal(err)
	}
	walkNow(t, p)
	treecmp.AssertEqual(t, src, dst, treecmp.Options{Owners: true})
}

// writeEvent is the sample the kernel sends for a write of data at off.
func writeEvent(seq, ino uint64, off int64, data []byte) *evbuf {
	b := make([]byte, writeSize+len(data))
	w := writeOf(b)
	var now unix.Timespec
	unix.ClockGettime(unix.CLOCK_MONOTONIC, &now)
	w.H = bpf.CaptureEvHdr{Seq: seq, Ino: ino, Type: evWrite, Flags: fLast, EnterNs: uint64(now.Nano()), ExitNs: uint64(now.Nano()) + 1000}
	w.Off, w.Lo, w.Hi, w.Len = off, off, off+int64(len(data)), uint32(len(data))
	copy(b[writeSize:], data)
	return &evbuf{b: b, seq: seq}
}

// truncOpenEvent is the sample the kernel sends for an open of name in the
// root with O_TRUNC.
func truncOpenEvent(seq, ino, rootIno uint64, name string) *evbuf {
	b := make([]byte, metaSize)
	m := metaOf(b)
	var now unix.Timespec
	unix.ClockGettime(unix.CLOCK_MONOTONIC, &now)
	m.H = bpf.CaptureEvHdr{Seq: seq, Ino: ino, Type: evOpen, EnterNs: uint64(now.Nano()), ExitNs: uint64(now.Nano()) + 1000}
	m.DirIno, m.AtFlags = rootIno, unix.O_WRONLY|unix.O_TRUNC
	for i := range len(name) {
		m.Path1[i] = int8(name[i])
	}
	return &evbuf{b: b, seq: seq}
}

// TestWholeReadCoversEarlierWrites: a walk sends a file new to the model
// whole, and repairs read files back whole, as they are when read. A write
// numbered before the read began, processed after it, is already in those
// bytes, or was made to an older file whose inode number the entry took
// over; either way, replaying it put old bytes on the replica's copy (or,
// over a symlink, a file in its place).
func TestWholeReadCoversEarlierWrites(t *testing.T) {
	testenv.RequireBPF(t)
	content := func(b string) func(string) error {
		return func(path string) error { return os.WriteFile(path, []byte(b), 0o644) }
	}
	readBack := func(t *testing.T, p *processor) {
		p.dirtyNode(p.t.lookup("g"), 0, toEOF)
		if err := p.flush(); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		name    string
		before  func(path string) error // g before the copy, if set
		change  func(path string) error // g changed after the copy
		resends func(t *testing.T, p *processor)
		trunc   bool // the earlier event is an open with O_TRUNC, not a write
	}{
		{name: "file new to the model", change: content("new bytes"), resends: walkNow},
		{name: "symlink new to the model", change: func(path string) error { return os.Symlink("elsewhere", path) }, resends: walkNow},
		{name: "file read back", before: content("old bytes"), change: content("new bytes"), resends: readBack},
		{name: "file read back, then an earlier truncating open", before: content("old bytes"), change: content("new bytes"), resends: readBack, trunc: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src, dst := t.TempDir(), t.TempDir()
			g := filepath.Join(src, "g")
			if tt.before != nil {
				if err := tt.before(g); err != nil {
					t.Fatal(err)
				}
			}
			// The test's own changes are not captured: it plays the
			// kernel's part with the write it sends.
			s, p := copiedTree(t, src, dst)
			if err := tt.change(g); err != nil {
				t.Fatal(err)
			}
			var st unix.Stat_t
			if err := unix.Lstat(g, &st); err != nil {
				t.Fatal(err)
			}
			start, err := s.k.seqNow()
			if err != nil {
				t.Fatal(err)
			}
			if err := s.k.(*kernel).coll.Variables["seq_next"].Set(start + 10); err != nil {
				t.Fatal(err)
			}
			tt.resends(t, p)
			ev := writeEvent(start+5, st.Ino, 0, []byte("old"))
			if tt.trunc {
				ev = truncOpenEvent(start+5, st.Ino, p.t.root.ino, "g")
			}
			if err := p.event(ev); err != nil {
				t.Fatal(err)
			}
			if err := p.flush(); err != nil {
				t.Fatal(err)
			}
			treecmp.AssertEqual(t, src, dst, treecmp.Options{Owners: true})
		})
	}
}
