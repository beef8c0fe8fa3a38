package resync

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"runtime"
	"sync"

	"github.com/zeebo/blake3"
)

// HashSize is the length of a block hash: BLAKE3 truncated to 128 bits,
// which keeps the chance of two different blocks sharing a hash far below
// that of an undetected disk error. Wire format (manifests, the sync
// protocol).
const HashSize = 16

// Hash is the strong hash of one block.
type Hash [HashSize]byte

func (h Hash) String() string { return hex.EncodeToString(h[:]) }

// hashBlock hashes one block.
func hashBlock(b []byte) Hash {
	var h Hash
	sum := blake3.Sum256(b)
	copy(h[:], sum[:])
	return h
}

// DefaultBlockSize is the block size of block-level sync and verify unless
// configured otherwise.
const DefaultBlockSize = 64 << 10

// pieceBytes is how much one read hands to a hashing worker: large
// reads for the disk, several pieces in flight for the cores.
const pieceBytes = 4 << 20

// HashBlocks hashes r's blocks of blockSize bytes (the last may be shorter)
// up to size, in parallel, reading at most a few pieces ahead: the data is
// never all in memory. A reader that ends before size yields the hashes of
// what it held.
func HashBlocks(ctx context.Context, r io.ReaderAt, size int64, blockSize int) ([]Hash, error) {
	if blockSize <= 0 {
		return nil, fmt.Errorf("resync: block size %d", blockSize)
	}
	if size <= 0 {
		return nil, nil
	}
	n := (size + int64(blockSize) - 1) / int64(blockSize)
	hashes := make([]Hash, n)
	per := max(1, pieceBytes/blockSize)
	pieceLen := int64(per) * int64(blockSize)
	workers := runtime.GOMAXPROCS(0)

	type piece struct {
		first int64 // index of its first block
		buf   []byte
	}
	pool := sync.Pool{New: func() any { return make([]byte, pieceLen) }}
	work := make(chan piece, workers)
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for p := range work {
				for i, off := p.first, 0; off < len(p.buf); i, off = i+1, off+blockSize {
					hashes[i] = hashBlock(p.buf[off:min(off+blockSize, len(p.buf))])
				}
				pool.Put(p.buf[:cap(p.buf)])
			}
		})
	}
	var (
		err   error
		total = n
	)
	for off := int64(0); off < size; off += pieceLen {
		if err = ctx.Err(); err != nil {
			break
		}
		buf := pool.Get().([]byte)[:min(pieceLen, size-off)]
		m, rerr := r.ReadAt(buf, off)
		if m > 0 {
			work <- piece{first: off / int64(blockSize), buf: buf[:m]}
		}
		if rerr != nil && !errors.Is(rerr, io.EOF) {
			err = fmt.Errorf("resync: read at %d: %w", off, rerr)
			break
		}
		if m < len(buf) { // shorter than it was: hash what is there
			total = (off + int64(m) + int64(blockSize) - 1) / int64(blockSize)
			break
		}
	}
	close(work)
	wg.Wait()
	if err != nil {
		return nil, err
	}
	return hashes[:total], nil
}
