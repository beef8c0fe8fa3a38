package resync

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"runtime"
	"sync"

	"github.com/zeebo/xxh3"
)

// HashSize is the length of a block hash: XXH3-128, the strong checksum
// rsync also uses, which hashes at memory speed. 128 bits keep the chance
// of two different blocks sharing a hash far below that of an undetected
// disk error; it is not meant to resist a forger, and the data it compares
// only comes from authenticated peers. Wire format (manifests, the sync
// protocol).
const HashSize = 16

// Hash is the strong hash of one block.
type Hash [HashSize]byte

func (h Hash) String() string { return hex.EncodeToString(h[:]) }

// hashBlock hashes one block.
func hashBlock(b []byte) Hash { return xxh3.Hash128(b).Bytes() }

// DefaultBlockSize is the block size of block-level sync and verify unless
// configured otherwise.
const DefaultBlockSize = 64 << 10

// pieceBytes is how much one read hands to a hashing worker: large
// reads for the disk, several pieces in flight for the cores.
const pieceBytes = 4 << 20

// pieces holds read buffers of pieceBytes, shared by every hashing.
var pieces = sync.Pool{New: func() any { return make([]byte, pieceBytes) }}

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
	pieceLen := int64(max(1, pieceBytes/blockSize)) * int64(blockSize)
	hashPiece := func(first int64, buf []byte) {
		for i, off := first, 0; off < len(buf); i, off = i+1, off+blockSize {
			hashes[i] = hashBlock(buf[off:min(off+blockSize, len(buf))])
		}
	}
	getBuf := func(n int64) []byte {
		if pieceLen > pieceBytes {
			return make([]byte, n)
		}
		return pieces.Get().([]byte)[:n]
	}
	putBuf := func(b []byte) {
		if int64(cap(b)) == pieceBytes {
			pieces.Put(b[:pieceBytes])
		}
	}
	if size <= pieceLen {
		// One piece: no goroutines for the many small files of a tree.
		buf := getBuf(size)
		defer putBuf(buf)
		m, err := r.ReadAt(buf, 0)
		if err != nil && !errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("resync: read at 0: %w", err)
		}
		hashPiece(0, buf[:m])
		return hashes[:(int64(m)+int64(blockSize)-1)/int64(blockSize)], nil
	}

	type piece struct {
		first int64 // index of its first block
		buf   []byte
	}
	workers := runtime.GOMAXPROCS(0)
	work := make(chan piece, workers)
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for p := range work {
				hashPiece(p.first, p.buf)
				putBuf(p.buf)
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
		buf := getBuf(min(pieceLen, size-off))
		m, rerr := r.ReadAt(buf, off)
		if m > 0 {
			work <- piece{first: off / int64(blockSize), buf: buf[:m]}
		} else {
			putBuf(buf)
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
