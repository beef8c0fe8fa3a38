package resync

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/writecap/writecap/replay"
)

// Manifest is a tree as one side holds it: every entry, and the block
// hashes of every regular file. A master compares its files with a
// replica's manifest and sends only the blocks that differ.
type Manifest struct {
	BlockSize int
	Entries   []Entry  // sorted by path, as Scan returns them
	Hashes    [][]Hash // Hashes[i] are the blocks of Entries[i] (files only)
	index     map[string]int
}

// BuildManifest scans root and hashes its files, several at once.
func BuildManifest(ctx context.Context, root string, blockSize int, exclude []string, p *Progress) (*Manifest, error) {
	if blockSize <= 0 {
		blockSize = DefaultBlockSize
	}
	if p == nil {
		p = &Progress{}
	}
	p.start()
	es, err := Scan(ctx, root, exclude, func(string, error) {})
	if err != nil {
		return nil, err
	}
	m := &Manifest{BlockSize: blockSize, Entries: es, Hashes: make([][]Hash, len(es))}
	gone := make([]bool, len(es)) // each written by one worker
	for i := range es {
		if es[i].Kind == KindFile {
			p.FilesTotal.Add(1)
			p.BytesTotal.Add(es[i].Size)
		}
	}
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		first error
		work  = make(chan int)
	)
	for range max(2, runtime.GOMAXPROCS(0)) {
		wg.Go(func() {
			for i := range work {
				hs, err := hashFile(ctx, filepath.Join(root, es[i].Path), es[i].Size, blockSize)
				if errors.Is(err, fs.ErrNotExist) || errors.Is(err, unix.ENOTDIR) || errors.Is(err, unix.ELOOP) {
					gone[i] = true // removed or replaced since the scan: a live tree
					continue
				}
				if err != nil {
					mu.Lock()
					first = cmpErr(first, err)
					mu.Unlock()
					continue
				}
				m.Hashes[i] = hs
				p.FilesDone.Add(1)
				p.BytesDone.Add(es[i].Size)
			}
		})
	}
	for i := range es {
		if es[i].Kind == KindFile && ctx.Err() == nil {
			work <- i
		}
	}
	close(work)
	wg.Wait()
	if first == nil {
		first = ctx.Err()
	}
	if first != nil {
		return nil, first
	}
	k := 0
	for i := range m.Entries {
		if !gone[i] {
			m.Entries[k], m.Hashes[k] = m.Entries[i], m.Hashes[i]
			k++
		}
	}
	m.Entries, m.Hashes = m.Entries[:k], m.Hashes[:k]
	return m, nil
}

func cmpErr(first, err error) error {
	if first != nil {
		return first
	}
	return err
}

func hashFile(ctx context.Context, p string, size int64, bs int) ([]Hash, error) {
	f, err := os.OpenFile(p, os.O_RDONLY|unix.O_NOFOLLOW, 0)
	if err != nil {
		return nil, fmt.Errorf("resync: hash %s: %w", p, err)
	}
	defer f.Close()
	hs, err := HashBlocks(ctx, f, size, bs)
	if err != nil {
		return nil, fmt.Errorf("resync: hash %s: %w", p, err)
	}
	return hs, nil
}

// BuildManifestOf makes the manifest of the named paths beneath root only
// (those that exist), as a replica answers a master that repairs them. The
// paths come from the other side: each must be clean and relative, and is
// resolved without leaving root.
func BuildManifestOf(ctx context.Context, root string, blockSize int, paths []string) (*Manifest, error) {
	if blockSize <= 0 || blockSize > MaxBlockSize {
		return nil, fmt.Errorf("resync: block size %d", blockSize)
	}
	r, err := os.OpenRoot(root)
	if err != nil {
		return nil, fmt.Errorf("resync: %w", err)
	}
	defer r.Close()
	sorted := slices.Clone(paths)
	slices.SortFunc(sorted, comparePaths)
	sorted = slices.Compact(sorted)
	m := &Manifest{BlockSize: blockSize}
	for _, p := range sorted {
		if !replay.ValidPath(p) {
			return nil, fmt.Errorf("resync: manifest of %q: not a clean relative path", p)
		}
		e, hs, err := entryOf(ctx, r, p, blockSize)
		if errors.Is(err, fs.ErrNotExist) || errors.Is(err, unix.ENOTDIR) {
			continue
		}
		if err != nil {
			return nil, err
		}
		if e != nil {
			m.Entries = append(m.Entries, *e)
			m.Hashes = append(m.Hashes, hs)
		}
	}
	return m, nil
}

// entryOf describes one path beneath r; nil for kinds sync does not carry.
func entryOf(ctx context.Context, r *os.Root, p string, bs int) (*Entry, []Hash, error) {
	fi, err := r.Lstat(p)
	if err != nil {
		return nil, nil, err
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return nil, nil, fmt.Errorf("resync: %s: no stat", p)
	}
	e := &Entry{Path: p, Mode: uint32(st.Mode) & 0o7777, UID: st.Uid, GID: st.Gid, Size: st.Size,
		MTime: st.Mtim.Nano(), Dev: st.Dev, Ino: st.Ino, Nlink: uint32(st.Nlink)}
	switch {
	case fi.Mode().IsRegular():
		e.Kind = KindFile
		f, err := r.OpenFile(p, os.O_RDONLY|unix.O_NOFOLLOW, 0)
		if err != nil {
			return nil, nil, err
		}
		defer f.Close()
		hs, err := HashBlocks(ctx, f, e.Size, bs)
		if err != nil {
			return nil, nil, fmt.Errorf("resync: hash %s: %w", p, err)
		}
		return e, hs, nil
	case fi.IsDir():
		e.Kind, e.Size = KindDir, 0
	case fi.Mode()&fs.ModeSymlink != 0:
		e.Kind = KindSymlink
		if e.Target, err = r.Readlink(p); err != nil {
			return nil, nil, err
		}
	default:
		return nil, nil, nil
	}
	return e, nil, nil
}

// Lookup returns the entry at rel and, for a file, its block hashes.
func (m *Manifest) Lookup(rel string) (*Entry, []Hash) {
	if m.index == nil {
		m.index = make(map[string]int, len(m.Entries))
		for i := range m.Entries {
			m.index[m.Entries[i].Path] = i
		}
	}
	i, ok := m.index[rel]
	if !ok {
		return nil, nil
	}
	return &m.Entries[i], m.Hashes[i]
}

// HashOf is the hash one block of the given bytes has in a manifest.
func HashOf(b []byte) Hash { return hashBlock(b) }

// Unknown stands, in a manifest Common makes, for a block its sides do not
// agree on: a comparison with it never finds the block held. (A real block
// hashing to it is only sent again.)
var Unknown Hash

// Holds reports whether a block with hash h is the one the manifest's hash
// want says a side holds.
func Holds(want, h Hash) bool { return want == h && want != Unknown }

// Common is what every one of ms holds (all made with one block size): the
// entries all have at a path with the same kind (and symlink target), and
// of a file the blocks as far as the shortest copy reaches, Unknown where
// the copies differ. A file with another name on any side has Nlink above
// 1. Common of one manifest is that manifest.
func Common(ms ...*Manifest) (*Manifest, error) {
	if len(ms) == 0 {
		return nil, errors.New("resync: common of no manifests")
	}
	if len(ms) == 1 {
		return ms[0], nil
	}
	out := &Manifest{BlockSize: ms[0].BlockSize}
	for _, o := range ms[1:] {
		if o.BlockSize != out.BlockSize {
			return nil, fmt.Errorf("resync: common of manifests with block sizes %d and %d", out.BlockSize, o.BlockSize)
		}
	}
next:
	for i, e := range ms[0].Entries {
		hs := slices.Clone(ms[0].Hashes[i])
		for _, o := range ms[1:] {
			oe, ohs := o.Lookup(e.Path)
			if oe == nil || oe.Kind != e.Kind || oe.Target != e.Target {
				continue next
			}
			e.Nlink = max(e.Nlink, oe.Nlink)
			e.Size = min(e.Size, oe.Size)
			hs = hs[:min(len(hs), len(ohs))]
			for k := range hs {
				if hs[k] != ohs[k] {
					hs[k] = Unknown
				}
			}
		}
		out.Entries = append(out.Entries, e)
		out.Hashes = append(out.Hashes, hs)
	}
	return out, nil
}
