// Package capture turns the kernel's view of completed writes into ordered
// journal records for one or more protected directory trees.
package capture

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/writecap/writecap/journal"
	"github.com/writecap/writecap/resync"
)

// Sink receives records in sequence order. Record.Data is only valid during
// the call.
type Sink interface {
	Write(recs []journal.Record) error
}

// A Rebuilder is a Sink that wants to know where full copies of the tree
// begin: the records from seq on bring a replica that holds base (an empty
// one when base is nil) to the master's state, so a replica that cannot
// resume may start over there.
type Rebuilder interface {
	RebuildAt(seq uint64, base *resync.Manifest)
}

// Config describes what to capture and the limits that apply.
type Config struct {
	Root string // protected directory (absolute, no symlinks in it after cleaning)

	// RingSize is the kernel ring buffer in bytes (a power of two). When it
	// fills, writes are recorded as lost ranges and repaired from the file.
	RingSize int
	// MaxData is the largest write whose bytes travel through the ring;
	// larger writes become dirty ranges read back from the file.
	MaxData int64
	// PollInterval bounds how long a record waits in the ring, since the
	// kernel wakes the reader only when a quarter of the ring is full.
	PollInterval time.Duration
	// QueueDepth is how many samples may wait between reader and processor.
	QueueDepth int
	// Resume, if set, replaces the initial full copy with a repair of what
	// may have changed since replicas last had the tree: see Resume.
	Resume *Resume
	// Base, if set (and Resume is not), is what the replicas hold when the
	// stream starts: the initial copy keeps what matches it, removes what
	// the master lacks and sends only the blocks of files that differ.
	Base *resync.Manifest
	// LearnOnly, without Resume or Base, makes the start walk learn the
	// tree without sending it: full copies are made when asked for
	// (Resync), against what each replica holds.
	LearnOnly bool
	Logger    *slog.Logger
}

// Resume describes a tree replicas already hold but for some changes: what
// an earlier capture recorded (Changes), and whatever changed while nothing
// captured, found by change time (Since) and by directories that moved
// (Dirs, the directories' inode numbers and paths as the earlier capture
// knew them).
//
// Held, when set, is asked once what the replicas hold of the regular
// files the repair would otherwise send whole (none when it sends
// everything); those files' blocks that the manifest it returns has are
// not sent again. It returns nil to send them whole.
type Resume struct {
	Changes *journal.Changes
	Since   time.Time
	Dirs    map[uint64]string
	Held    func(paths []string) *resync.Manifest
}

func (c *Config) fill() error {
	if c.RingSize == 0 {
		c.RingSize = 64 << 20
	}
	if c.RingSize&(c.RingSize-1) != 0 || c.RingSize < os.Getpagesize() {
		return fmt.Errorf("capture: ring size %d is not a power of two of at least a page", c.RingSize)
	}
	if c.MaxData == 0 {
		c.MaxData = 8 << 20
	}
	if c.PollInterval == 0 {
		c.PollInterval = 2 * time.Millisecond
	}
	if c.QueueDepth == 0 {
		c.QueueDepth = 8192
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return nil
}

// Stats are cumulative counts; safe to read while Run is going.
type Stats struct {
	Events      uint64 // ring samples processed
	WriteCalls  uint64 // write syscalls captured (last chunk seen)
	WriteBytes  uint64 // bytes carried in write records
	Records     uint64 // journal records emitted
	Lost        uint64 // samples the kernel could not queue (ring full)
	MetaLost    uint64 // metadata events lost
	Races       uint64 // overlapping operations repaired from the master
	Dirty       uint64 // dirty ranges read back from the master
	Reconciles  uint64 // namespace reconciliations against the master
	Unsupported uint64 // entries skipped (devices, fifos, sockets)
	BaseFiles   uint64 // files the initial copy compared with Base
	BaseSkipped uint64 // bytes it did not send because Base had them
}

// Source captures one protected tree.
type Source struct {
	cfg        Config
	root       string
	k          ring
	stats      stats
	resync     atomic.Bool // a full copy has been asked for
	marks      marks
	lastSeq    atomic.Uint64 // the last seq handed to the sink
	resyncBase atomic.Pointer[resync.Manifest]
	repair     atomic.Bool // a repair of a Repairer's changes has been asked for
	snapDirs   atomic.Bool // a DirWatcher wants the directories
}

type stats struct {
	events, writeCalls, writeBytes, records, lost, metaLost, races, dirty, reconciles, unsupported, baseFiles, baseSkipped atomic.Uint64
}

// New loads and attaches the capture programs. Changes are captured from the
// moment it returns, and queue in the kernel until Run reads them.
func New(cfg Config) (*Source, error) {
	if err := cfg.fill(); err != nil {
		return nil, err
	}
	root, err := filepath.Abs(cfg.Root)
	if err != nil {
		return nil, fmt.Errorf("capture: root %s: %w", cfg.Root, err)
	}
	if root, err = filepath.EvalSymlinks(root); err != nil {
		return nil, fmt.Errorf("capture: root %s: %w", cfg.Root, err)
	}
	if fi, err := os.Stat(root); err != nil {
		return nil, fmt.Errorf("capture: root %s: %w", root, err)
	} else if !fi.IsDir() {
		return nil, fmt.Errorf("capture: root %s is not a directory", root)
	}
	if os.Geteuid() != 0 {
		return nil, fmt.Errorf("capture: loading BPF programs needs root (running as uid %d): %w", os.Geteuid(), unix.EPERM)
	}
	if _, err := os.Stat("/sys/kernel/btf/vmlinux"); err != nil {
		return nil, fmt.Errorf("capture: kernel has no BTF (/sys/kernel/btf/vmlinux): %w", err)
	}
	k, err := loadKernel([]string{root}, cfg)
	if err != nil {
		return nil, err
	}
	return &Source{cfg: cfg, root: root, k: k}, nil
}

// Root is the protected directory as resolved.
func (s *Source) Root() string { return s.root }

// Run brings a replica from nothing to the root's current state through
// sink, then streams every captured change until ctx ends. On the way out it
// drains all that the kernel captured, so the sink has seen every change
// completed before ctx ended.
func (s *Source) Run(ctx context.Context, sink Sink) error {
	r := newReader(s.k, s.cfg.PollInterval, s.cfg.QueueDepth)
	p, err := newProcessor(s, sink)
	if err != nil {
		return err
	}
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	readErr := make(chan error, 1)
	go func() { readErr <- r.run(rctx) }()

	err = p.initial()
	if err == nil {
		err = p.loop(r)
	}
	if err != nil {
		// Stop the reader and unblock it before reporting.
		cancel()
		go func() {
			for range r.out {
			}
		}()
		return errors.Join(err, <-readErr)
	}
	return <-readErr
}

// Resync asks Run for a full copy of the tree within a poll interval: as
// to an empty replica, or against base, what a replica holds (then only
// what differs from it goes). A Rebuilder sink learns where it begins.
func (s *Source) Resync(base *resync.Manifest) {
	s.resyncBase.Store(base)
	s.resync.Store(true)
}

// Stats returns the counts so far.
func (s *Source) Stats() Stats {
	st := &s.stats
	return Stats{
		Events: st.events.Load(), WriteCalls: st.writeCalls.Load(), WriteBytes: st.writeBytes.Load(),
		Records: st.records.Load(), Lost: st.lost.Load(), MetaLost: st.metaLost.Load(),
		Races: st.races.Load(), Dirty: st.dirty.Load(), Reconciles: st.reconciles.Load(),
		Unsupported: st.unsupported.Load(), BaseFiles: st.baseFiles.Load(), BaseSkipped: st.baseSkipped.Load(),
	}
}

// Close detaches the programs.
func (s *Source) Close() error { return s.k.Close() }
