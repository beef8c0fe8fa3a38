package resync

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sync"

	"golang.org/x/sys/unix"
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
