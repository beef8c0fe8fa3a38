package resync

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/writecap/writecap/snapshot"
)

// Method chooses how a file's content is brought over.
type Method int

const (
	// MethodAuto compares blocks for files of at least Threshold bytes that
	// the target holds, and sends other files whole.
	MethodAuto Method = iota
	// MethodFile sends every file that differs whole.
	MethodFile
	// MethodBlock compares blocks for every file the target holds.
	MethodBlock
)

// ParseMethod reads "auto", "file" or "block".
func ParseMethod(s string) (Method, error) {
	switch s {
	case "", "auto":
		return MethodAuto, nil
	case "file":
		return MethodFile, nil
	case "block":
		return MethodBlock, nil
	}
	return 0, fmt.Errorf("resync: method %q: want auto, file or block", s)
}

// Trust says when equal size and modification time mean equal content.
type Trust int

const (
	// TrustSmall trusts size and time for files below Threshold (trees of
	// many small files), and compares the blocks of larger ones.
	TrustSmall Trust = iota
	TrustAlways
	TrustNever
)

// ParseTrust reads "small", "always" or "never".
func ParseTrust(s string) (Trust, error) {
	switch s {
	case "", "small":
		return TrustSmall, nil
	case "always":
		return TrustAlways, nil
	case "never":
		return TrustNever, nil
	}
	return 0, fmt.Errorf("resync: trust %q: want small, always or never", s)
}

// DefaultThreshold is the size from which MethodAuto compares blocks.
const DefaultThreshold = 1 << 20

// CheckpointName is the file at the target's root that records the files a
// sync completed, so that an interrupted sync does not redo them. It is
// removed when the sync ends and never synchronised.
const CheckpointName = ".writecap-sync"

// Options tunes Sync.
type Options struct {
	Method    Method
	BlockSize int   // DefaultBlockSize when 0
	Threshold int64 // DefaultThreshold when 0
	Trust     Trust
	Progress  *Progress // may be nil
	Logger    *slog.Logger
	// Snapshot, if set, makes a consistent view of the source to sync
	// from, released at the end; the target gets the source as it was
	// at that point.
	Snapshot snapshot.Provider
	// Skip hears of source entries sync cannot carry (devices, fifos,
	// sockets); when nil they are an error.
	Skip func(rel string, err error)

	fileDone func(rel string) // tests interrupt a sync through it
}

func (o *Options) fill() {
	if o.BlockSize <= 0 {
		o.BlockSize = DefaultBlockSize
	}
	if o.Threshold <= 0 {
		o.Threshold = DefaultThreshold
	}
	if o.Progress == nil {
		o.Progress = &Progress{}
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
}

// Stats says what a sync did.
type Stats struct {
	Files, Dirs, Symlinks int64 // on the source
	Copied                int64 // files sent whole
	Patched               int64 // files sent by their differing blocks
	Unchanged             int64 // files whose content was right already
	Resumed               int64 // of those, files an interrupted run completed
	Linked                int64 // hard links made
	Removed               int64 // entries only the target had, or of another kind
	BlocksCompared        int64
	BlocksSent            int64
	BytesSent             int64 // data and hashes that crossed
}

// ErrNested is returned when one tree contains the other.
var ErrNested = errors.New("resync: source and target must not contain each other")

// Sync makes target hold what source holds: names, kinds, contents, modes,
// owners, modification times, symlinks and hard links; what only target
// holds is removed.
func Sync(ctx context.Context, source, target string, o Options) (Stats, error) {
	o.fill()
	src, dst, err := Dirs(source, target)
	if err != nil {
		return Stats{}, err
	}
	if o.Snapshot != nil {
		snap, err := o.Snapshot.Take(ctx, src)
		if err != nil {
			return Stats{}, err
		}
		defer func() {
			if err := snap.Release(context.WithoutCancel(ctx)); err != nil {
				o.Logger.Error("resync: releasing the source's snapshot", "snapshot", snap.Path, "err", err)
			}
		}()
		o.Logger.Info("syncing from a snapshot of the source", "source", src, "snapshot", snap.Path, "provider", snap.Provider)
		src = snap.Path
	}
	root, err := os.OpenRoot(dst)
	if err != nil {
		return Stats{}, fmt.Errorf("resync: target %s: %w", dst, err)
	}
	defer root.Close()
	s := &syncer{o: o, src: src, dst: dst, root: root, touched: map[string]bool{}}
	if s.ck, err = openCheckpoint(root); err != nil {
		return Stats{}, err
	}
	defer s.ck.close()
	o.Progress.start()
	if err := s.run(ctx); err != nil {
		return s.stats(), err
	}
	if err := s.ck.remove(); err != nil {
		return s.stats(), err
	}
	return s.stats(), nil
}

// Dirs resolves a source and a target directory (creating the target) and
// refuses trees that contain each other.
func Dirs(source, target string) (string, string, error) {
	if source == "" || target == "" {
		return "", "", fmt.Errorf("resync: both a source and a target directory are required")
	}
	src, err := filepath.Abs(source)
	if err == nil {
		src, err = filepath.EvalSymlinks(src)
	}
	if err != nil {
		return "", "", fmt.Errorf("resync: source %s: %w", source, err)
	}
	if err := os.MkdirAll(target, 0o755); err != nil {
		return "", "", fmt.Errorf("resync: target %s: %w", target, err)
	}
	dst, err := filepath.Abs(target)
	if err == nil {
		dst, err = filepath.EvalSymlinks(dst)
	}
	if err != nil {
		return "", "", fmt.Errorf("resync: target %s: %w", target, err)
	}
	if within(dst, src) || within(src, dst) {
		return "", "", fmt.Errorf("resync: source %s, target %s: %w", src, dst, ErrNested)
	}
	return src, dst, nil
}

func within(p, dir string) bool {
	return p == dir || strings.HasPrefix(p, dir+string(filepath.Separator))
}

type syncer struct {
	o        Options
	src, dst string
	root     *os.Root
	ck       *checkpoint

	mu      sync.Mutex
	st      Stats
	touched map[string]bool // directories whose names this sync changed
}

// touch notes that the directory holding rel changed.
func (s *syncer) touch(rel string) {
	dir := path.Dir(rel)
	if dir == "." {
		dir = ""
	}
	s.mu.Lock()
	s.touched[dir] = true
	s.mu.Unlock()
}

func (s *syncer) stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.st
	st.BytesSent = s.o.Progress.BytesSent.Load()
	return st
}

func (s *syncer) count(f func(*Stats)) {
	s.mu.Lock()
	f(&s.st)
	s.mu.Unlock()
}

// scanBoth lists both trees at once.
func (s *syncer) scanBoth(ctx context.Context) (src, dst []Entry, err error) {
	var wg sync.WaitGroup
	var derr error
	wg.Go(func() { dst, derr = Scan(ctx, s.dst, []string{CheckpointName}, func(string, error) {}) })
	src, err = Scan(ctx, s.src, nil, s.o.Skip)
	wg.Wait()
	if err == nil {
		err = derr
	}
	for i := range src {
		if src[i].Path == CheckpointName {
			return nil, nil, fmt.Errorf("resync: source %s holds %s, a name sync reserves at the target's root", s.src, CheckpointName)
		}
	}
	return src, dst, err
}

// fileTask is one source file whose content is to be brought over.
type fileTask struct {
	src    *Entry
	dst    *Entry // nil when the target has no file there to compare with
	inSync bool   // the target's links of dst match the source's of src
}

func (s *syncer) run(ctx context.Context) error {
	srcs, dsts, err := s.scanBoth(ctx)
	if err != nil {
		return err
	}
	dstBy := make(map[string]*Entry, len(dsts))
	for i := range dsts {
		dstBy[dsts[i].Path] = &dsts[i]
	}
	// Remove what the source does not hold, or holds as another kind, first:
	// it frees space and names.
	var gone string
	for i := range dsts {
		d := &dsts[i]
		if gone != "" && isBeneath(d.Path, gone) {
			delete(dstBy, d.Path)
			continue
		}
		if e := find(srcs, d.Path); e != nil && e.Kind == d.Kind {
			continue
		}
		if err := s.root.RemoveAll(d.Path); err != nil {
			return fmt.Errorf("resync: remove %s from the target: %w", d.Path, err)
		}
		s.touch(d.Path)
		delete(dstBy, d.Path)
		gone = d.Path
		s.count(func(st *Stats) { st.Removed++ })
	}

	srcLinks, dstLinks := linkGroups(srcs), linkGroups(dsts)
	var (
		files   []fileTask
		links   [][2]string // leader, follower
		leaders = map[[2]uint64]string{}
	)
	for i := range srcs {
		e := &srcs[i]
		d := dstBy[e.Path]
		switch e.Kind {
		case KindDir:
			s.count(func(st *Stats) { st.Dirs++ })
			if d == nil {
				if err := s.root.Mkdir(e.Path, 0o700); err != nil {
					return fmt.Errorf("resync: make directory %s: %w", e.Path, err)
				}
				s.touch(e.Path)
			}
		case KindSymlink:
			s.count(func(st *Stats) { st.Symlinks++ })
			if d != nil && d.Target == e.Target {
				continue
			}
			if d != nil {
				if err := s.root.Remove(e.Path); err != nil {
					return fmt.Errorf("resync: replace symlink %s: %w", e.Path, err)
				}
			}
			if err := s.root.Symlink(e.Target, e.Path); err != nil {
				return fmt.Errorf("resync: symlink %s: %w", e.Path, err)
			}
			s.touch(e.Path)
		case KindFile:
			s.count(func(st *Stats) { st.Files++ })
			id := [2]uint64{e.Dev, e.Ino}
			if leader, ok := leaders[id]; ok {
				if d == nil || !sameLinks(srcLinks[id], dstLinks, d) {
					links = append(links, [2]string{leader, e.Path})
				}
				continue
			}
			if e.Nlink > 1 {
				leaders[id] = e.Path
			}
			t := fileTask{src: e, dst: d}
			t.inSync = d != nil && sameLinks(srcLinks[id], dstLinks, d)
			files = append(files, t)
			s.o.Progress.FilesTotal.Add(1)
			s.o.Progress.BytesTotal.Add(e.Size)
		}
	}
	if err := s.files(ctx, files); err != nil {
		return err
	}
	for _, l := range links {
		if err := s.link(l[0], l[1]); err != nil {
			return err
		}
	}
	// Directories last and deepest first: filling them changed their
	// times. One whose names this sync did not change keeps its time.
	for i := len(srcs) - 1; i >= 0; i-- {
		e := &srcs[i]
		if e.Kind == KindFile {
			continue
		}
		have := dstBy[e.Path]
		if e.Kind == KindDir && s.touched[e.Path] {
			have = nil
		}
		if err := s.attrs(e, have); err != nil {
			return err
		}
	}
	if err := s.root.Chtimes(".", time.Time{}, time.Unix(0, mtimeOf(s.src))); err != nil {
		return fmt.Errorf("resync: set the target root's time: %w", err)
	}
	return s.syncfs()
}

// syncfs makes everything written durable in one call.
func (s *syncer) syncfs() error {
	f, err := s.root.Open(".")
	if err != nil {
		return fmt.Errorf("resync: target %s: %w", s.dst, err)
	}
	defer f.Close()
	if err := unix.Syncfs(int(f.Fd())); err != nil {
		return fmt.Errorf("resync: sync target %s: %w", s.dst, err)
	}
	return nil
}

func mtimeOf(p string) int64 {
	var st unix.Stat_t
	if unix.Lstat(p, &st) != nil {
		return time.Now().UnixNano()
	}
	return st.Mtim.Nano()
}

// find returns the entry of sorted entries at p.
func find(es []Entry, p string) *Entry {
	lo, hi := 0, len(es)
	for lo < hi {
		m := (lo + hi) / 2
		switch c := comparePaths(es[m].Path, p); {
		case c == 0:
			return &es[m]
		case c < 0:
			lo = m + 1
		default:
			hi = m
		}
	}
	return nil
}

func isBeneath(p, dir string) bool {
	return len(p) > len(dir) && p[len(dir)] == '/' && strings.HasPrefix(p, dir)
}

// linkGroups maps each file with more than one name in the tree to its names.
func linkGroups(es []Entry) map[[2]uint64][]string {
	g := map[[2]uint64][]string{}
	for i := range es {
		if e := &es[i]; e.Kind == KindFile && e.Nlink > 1 {
			id := [2]uint64{e.Dev, e.Ino}
			g[id] = append(g[id], e.Path)
		}
	}
	return g
}

// sameLinks reports whether the target file d has exactly the names the
// source file has (names: nil for a file with one name).
func sameLinks(names []string, dst map[[2]uint64][]string, d *Entry) bool {
	have := dst[[2]uint64{d.Dev, d.Ino}]
	if d.Nlink <= 1 || len(have) <= 1 {
		return len(names) <= 1 && d.Nlink <= 1
	}
	if len(have) != len(names) {
		return false
	}
	for i := range names {
		if have[i] != names[i] {
			return false
		}
	}
	return true
}

// files brings over the files' contents, several at once: most time goes
// to waiting on disks (or the network).
func (s *syncer) files(ctx context.Context, tasks []fileTask) error {
	work := make(chan *fileTask)
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		first error
	)
	for range max(4, runtime.GOMAXPROCS(0)*2) {
		wg.Go(func() {
			for t := range work {
				if err := s.file(ctx, t); err != nil {
					mu.Lock()
					if first == nil {
						first = err
					}
					mu.Unlock()
				}
			}
		})
	}
	for i := range tasks {
		mu.Lock()
		failed := first != nil
		mu.Unlock()
		if failed || ctx.Err() != nil {
			break
		}
		work <- &tasks[i]
	}
	close(work)
	wg.Wait()
	if first == nil {
		first = ctx.Err()
	}
	return first
}

func (s *syncer) trusted(e *Entry) bool {
	switch s.o.Trust {
	case TrustAlways:
		return true
	case TrustNever:
		return false
	}
	return e.Size < s.o.Threshold
}

// file brings one file's content and attributes over.
func (s *syncer) file(ctx context.Context, t *fileTask) error {
	e, d := t.src, t.dst
	defer s.o.Progress.FilesDone.Add(1)
	if t.inSync && d.Size == e.Size && d.MTime == e.MTime {
		if s.trusted(e) {
			s.o.Progress.BytesDone.Add(e.Size)
			s.count(func(st *Stats) { st.Unchanged++ })
			return s.attrs(e, d)
		}
		if s.ck.done(e, d) {
			s.o.Progress.BytesDone.Add(e.Size)
			s.count(func(st *Stats) { st.Unchanged++; st.Resumed++ })
			return s.attrs(e, d)
		}
	}
	// A file whose other names the target already links to it is
	// rewritten in place: a new inode would leave those names behind.
	block := s.o.Method == MethodBlock || s.o.Method == MethodAuto && e.Size >= s.o.Threshold || t.inSync && d.Nlink > 1
	var (
		ino uint64
		err error
	)
	if t.inSync && block {
		ino, err = s.patch(ctx, e, d)
	} else {
		ino, err = s.copy(e)
	}
	if err != nil {
		return err
	}
	if err := s.attrs(e, nil); err != nil {
		return err
	}
	if !s.trusted(e) {
		if err := s.ck.add(e, ino); err != nil {
			return err
		}
	}
	if s.o.fileDone != nil {
		s.o.fileDone(e.Path)
	}
	return nil
}

func (s *syncer) openSource(rel string) (*os.File, error) {
	f, err := os.OpenFile(filepath.Join(s.src, rel), os.O_RDONLY|unix.O_NOFOLLOW, 0)
	if err != nil {
		return nil, fmt.Errorf("resync: source file %s: %w", rel, err)
	}
	return f, nil
}

// tempName is where a file is written whole before it replaces the old
// one, so that a sync killed meanwhile leaves the old file or the new one.
func tempName(rel string) string {
	dir, name := path.Split(rel)
	return dir + ".writecap." + hashBlock([]byte(name)).String()[:16] + ".tmp"
}

// copy sends e whole and returns the new file's inode.
func (s *syncer) copy(e *Entry) (uint64, error) {
	sf, err := s.openSource(e.Path)
	if err != nil {
		return 0, err
	}
	defer sf.Close()
	tmp := tempName(e.Path)
	df, err := s.root.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC|unix.O_NOFOLLOW, 0o600)
	if err != nil {
		return 0, fmt.Errorf("resync: create %s in the target: %w", tmp, err)
	}
	n, err := io.Copy(df, sf)
	s.o.Progress.BytesDone.Add(n)
	s.o.Progress.BytesSent.Add(n)
	if err == nil && !s.trusted(e) {
		err = df.Sync() // before the checkpoint says it is done
	}
	var st unix.Stat_t
	if err == nil {
		err = unix.Fstat(int(df.Fd()), &st)
	}
	if cerr := df.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		s.root.Remove(tmp)
		return 0, fmt.Errorf("resync: copy %s: %w", e.Path, err)
	}
	if err := s.root.Rename(tmp, e.Path); err != nil {
		s.root.Remove(tmp)
		return 0, fmt.Errorf("resync: put %s in place: %w", e.Path, err)
	}
	s.touch(e.Path)
	s.count(func(st *Stats) { st.Copied++ })
	return st.Ino, nil
}

// patch compares e's blocks with the target's file d and writes those that
// differ, in place; it returns the file's inode.
func (s *syncer) patch(ctx context.Context, e, d *Entry) (uint64, error) {
	sf, err := s.openSource(e.Path)
	if err != nil {
		return 0, err
	}
	defer sf.Close()
	df, err := s.root.OpenFile(e.Path, os.O_RDWR|unix.O_NOFOLLOW, 0)
	if err != nil {
		return 0, fmt.Errorf("resync: open %s in the target: %w", e.Path, err)
	}
	defer df.Close()
	bs := s.o.BlockSize
	var (
		theirs []Hash
		herr   error
		wg     sync.WaitGroup
	)
	wg.Go(func() { theirs, herr = HashBlocks(ctx, df, d.Size, bs) })
	ours, err := HashBlocks(ctx, sf, e.Size, bs)
	wg.Wait()
	if err == nil {
		err = herr
	}
	if err != nil {
		return 0, fmt.Errorf("resync: hash %s: %w", e.Path, err)
	}
	s.o.Progress.BytesSent.Add(int64(len(theirs)) * HashSize)
	sent, err := writeDiffering(sf, df, ours, theirs, bs, s.o.Progress)
	if err != nil {
		return 0, fmt.Errorf("resync: patch %s: %w", e.Path, err)
	}
	if d.Size > e.Size {
		if err := df.Truncate(e.Size); err != nil {
			return 0, fmt.Errorf("resync: truncate %s: %w", e.Path, err)
		}
	}
	if !s.trusted(e) {
		if err := df.Sync(); err != nil {
			return 0, fmt.Errorf("resync: sync %s: %w", e.Path, err)
		}
	}
	s.count(func(st *Stats) {
		st.BlocksCompared += int64(len(ours))
		st.BlocksSent += sent
		if sent > 0 || d.Size != e.Size {
			st.Patched++
		} else {
			st.Unchanged++
		}
	})
	return d.Ino, nil
}

// writeDiffering copies the blocks whose hashes differ (or that the target
// lacks) from src to dst, in runs, and returns how many it copied.
func writeDiffering(src io.ReaderAt, dst io.WriterAt, ours, theirs []Hash, bs int, p *Progress) (int64, error) {
	var (
		sent int64
		buf  []byte
	)
	for i := 0; i < len(ours); {
		if i < len(theirs) && ours[i] == theirs[i] {
			p.BytesDone.Add(int64(bs))
			i++
			continue
		}
		j := i + 1
		for j < len(ours) && (j >= len(theirs) || ours[j] != theirs[j]) && (j-i)*bs < pieceBytes {
			j++
		}
		off, n := int64(i)*int64(bs), (j-i)*bs
		if cap(buf) < n {
			buf = make([]byte, n)
		}
		m, err := src.ReadAt(buf[:n], off)
		if err != nil && !errors.Is(err, io.EOF) {
			return sent, err
		}
		if _, err := dst.WriteAt(buf[:m], off); err != nil {
			return sent, err
		}
		p.BytesDone.Add(int64(m))
		p.BytesSent.Add(int64(m))
		sent += int64(j - i)
		i = j
	}
	return sent, nil
}

// link gives the leader's file the follower's name too.
func (s *syncer) link(leader, follower string) error {
	if err := s.root.RemoveAll(follower); err != nil {
		return fmt.Errorf("resync: replace %s: %w", follower, err)
	}
	if err := s.root.Link(leader, follower); err != nil {
		return fmt.Errorf("resync: link %s to %s: %w", follower, leader, err)
	}
	s.touch(follower)
	s.count(func(st *Stats) { st.Linked++ })
	return nil
}

// attrs gives the target's entry e's owner, mode and modification time;
// with have (the target's entry as scanned) only what differs.
func (s *syncer) attrs(e, have *Entry) error {
	if have == nil || have.UID != e.UID || have.GID != e.GID {
		if err := s.root.Lchown(e.Path, int(e.UID), int(e.GID)); err != nil {
			return fmt.Errorf("resync: owner of %s: %w", e.Path, err)
		}
	}
	if e.Kind == KindSymlink {
		return nil // its mode is fixed and its time is not carried
	}
	// A chown clears setuid and setgid, so the mode follows it.
	if have == nil || have.Mode != e.Mode || have.UID != e.UID || have.GID != e.GID {
		if err := s.root.Chmod(e.Path, fileMode(e.Mode)); err != nil {
			return fmt.Errorf("resync: mode of %s: %w", e.Path, err)
		}
	}
	if have == nil || have.MTime != e.MTime {
		if err := s.root.Chtimes(e.Path, time.Time{}, time.Unix(0, e.MTime)); err != nil {
			return fmt.Errorf("resync: time of %s: %w", e.Path, err)
		}
	}
	return nil
}

// fileMode turns permission bits as the kernel keeps them into Go's.
func fileMode(m uint32) os.FileMode {
	fm := os.FileMode(m & 0o777)
	if m&unix.S_ISUID != 0 {
		fm |= os.ModeSetuid
	}
	if m&unix.S_ISGID != 0 {
		fm |= os.ModeSetgid
	}
	if m&unix.S_ISVTX != 0 {
		fm |= os.ModeSticky
	}
	return fm
}
