package resync

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path"
	"runtime"
	"slices"
	"strings"
	"sync"

	"golang.org/x/sys/unix"
)

// Kind is what an entry is. Wire format (manifests).
type Kind uint8

const (
	KindFile    Kind = 1
	KindDir     Kind = 2
	KindSymlink Kind = 3
)

func (k Kind) String() string {
	switch k {
	case KindFile:
		return "file"
	case KindDir:
		return "directory"
	case KindSymlink:
		return "symlink"
	}
	return fmt.Sprintf("Kind(%d)", uint8(k))
}

// Entry is one name in a tree.
type Entry struct {
	Path   string // relative to the root, slash-separated; never "" (the root is not listed)
	Kind   Kind
	Mode   uint32 // permission bits, with setuid, setgid and sticky
	UID    uint32
	GID    uint32
	Size   int64
	MTime  int64  // nanoseconds since the epoch
	Target string // a symlink's target

	// The file's identity on its side: equal Ino (and Dev) with Nlink > 1
	// are hard links of one file.
	Dev, Ino uint64
	Nlink    uint32
}

// sameFile reports whether a and b are one file on the same side.
func (e *Entry) sameFile(o *Entry) bool { return e.Ino == o.Ino && e.Dev == o.Dev }

// ErrUnsupported marks entries sync cannot carry (devices, fifos, sockets);
// Scan reports them through its skip callback and leaves them out.
var ErrUnsupported = errors.New("resync: unsupported file type")

// scanner walks a tree in parallel: directories are read by up to
// GOMAXPROCS*4 goroutines (the work is mostly waiting on the disk).
type scanner struct {
	ctx     context.Context
	root    int // directory descriptor of the root
	exclude map[string]bool
	skip    func(rel string, err error)

	mu      sync.Mutex
	entries []Entry
	err     error
	sem     chan struct{}
	wg      sync.WaitGroup
}

// Scan lists everything beneath root, sorted by path so that a directory
// comes before what it holds. Names in exclude (relative paths) are left out
// with all they hold. skip, when not nil, hears of entries left out because
// sync cannot carry them; otherwise they are an error.
func Scan(ctx context.Context, root string, exclude []string, skip func(rel string, err error)) ([]Entry, error) {
	fd, err := unix.Open(root, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("resync: open %s: %w", root, err)
	}
	defer unix.Close(fd)
	s := &scanner{ctx: ctx, root: fd, skip: skip, exclude: map[string]bool{},
		sem: make(chan struct{}, runtime.GOMAXPROCS(0)*4)}
	for _, e := range exclude {
		s.exclude[e] = true
	}
	s.wg.Add(1)
	s.dir(fd, "", false)
	s.wg.Wait()
	if s.err != nil {
		return nil, fmt.Errorf("resync: scan %s: %w", root, s.err)
	}
	slices.SortFunc(s.entries, func(a, b Entry) int { return comparePaths(a.Path, b.Path) })
	return s.entries, nil
}

// comparePaths orders paths component by component, so that everything
// beneath a directory follows it directly ("a", "a/b", "a-b").
func comparePaths(a, b string) int {
	for {
		ai, bi := strings.IndexByte(a, '/'), strings.IndexByte(b, '/')
		ac, bc := a, b
		if ai >= 0 {
			ac = a[:ai]
		}
		if bi >= 0 {
			bc = b[:bi]
		}
		if c := strings.Compare(ac, bc); c != 0 {
			return c
		}
		switch {
		case ai < 0 && bi < 0:
			return 0
		case ai < 0: // a is b's ancestor
			return -1
		case bi < 0:
			return 1
		}
		a, b = a[ai+1:], b[bi+1:]
	}
}

func (s *scanner) fail(err error) {
	s.mu.Lock()
	if s.err == nil {
		s.err = err
	}
	s.mu.Unlock()
}

func (s *scanner) failed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err != nil || s.ctx.Err() != nil
}

// dir lists one directory (fd, which it closes unless it is the root) and
// walks its subdirectories, in new goroutines while there is room.
func (s *scanner) dir(fd int, rel string, own bool) {
	defer s.wg.Done()
	if own {
		defer unix.Close(fd)
	}
	if s.failed() {
		if err := s.ctx.Err(); err != nil {
			s.fail(err)
		}
		return
	}
	dup, err := unix.Dup(fd)
	if err != nil {
		s.fail(fmt.Errorf("%s: %w", show(rel), err))
		return
	}
	f := os.NewFile(uintptr(dup), rel)
	names, err := f.Readdirnames(-1)
	f.Close()
	if err != nil {
		s.fail(fmt.Errorf("read directory %s: %w", show(rel), err))
		return
	}
	var local []Entry
	for _, name := range names {
		crel := path.Join(rel, name)
		if s.exclude[crel] {
			continue
		}
		var st unix.Stat_t
		if err := unix.Fstatat(fd, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			if errors.Is(err, unix.ENOENT) {
				continue // removed since the listing
			}
			s.fail(fmt.Errorf("stat %s: %w", crel, err))
			return
		}
		e := Entry{Path: crel, Mode: uint32(st.Mode) & 0o7777, UID: st.Uid, GID: st.Gid,
			Size: st.Size, MTime: st.Mtim.Nano(), Dev: st.Dev, Ino: st.Ino, Nlink: uint32(st.Nlink)}
		switch st.Mode & unix.S_IFMT {
		case unix.S_IFREG:
			e.Kind = KindFile
		case unix.S_IFDIR:
			e.Kind, e.Size = KindDir, 0
		case unix.S_IFLNK:
			e.Kind = KindSymlink
			t, err := readlinkat(fd, name)
			if err != nil {
				s.fail(fmt.Errorf("readlink %s: %w", crel, err))
				return
			}
			e.Target = t
		default:
			if s.skip == nil {
				s.fail(fmt.Errorf("%s: %w", crel, ErrUnsupported))
				return
			}
			s.skip(crel, ErrUnsupported)
			continue
		}
		local = append(local, e)
		if e.Kind != KindDir {
			continue
		}
		cfd, err := unix.Openat(fd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err != nil {
			if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENOTDIR) || errors.Is(err, unix.ELOOP) {
				local = local[:len(local)-1] // replaced since the stat
				continue
			}
			s.fail(fmt.Errorf("open %s: %w", crel, err))
			return
		}
		s.wg.Add(1)
		select {
		case s.sem <- struct{}{}:
			go func() {
				defer func() { <-s.sem }()
				s.dir(cfd, crel, true)
			}()
		default:
			s.dir(cfd, crel, true)
		}
	}
	s.mu.Lock()
	s.entries = append(s.entries, local...)
	s.mu.Unlock()
}

func readlinkat(dirfd int, name string) (string, error) {
	for size := 256; ; size *= 2 {
		buf := make([]byte, size)
		n, err := unix.Readlinkat(dirfd, name, buf)
		if err != nil {
			return "", err
		}
		if n < size {
			return string(buf[:n]), nil
		}
	}
}

// show names a relative path in messages, the root included.
func show(rel string) string {
	if rel == "" {
		return "."
	}
	return rel
}
