//go:build linux

package workload

const (
	blockSize = 4096     // the unit of collapse and insert ranges on ext4 and xfs
	maxSmall  = 64 << 10 // largest "small" write
	large     = 1 << 20  // large writes are bigger than this when MaxWrite allows
	hotBlocks = 16       // writes often hit the first blocks, so threads overlap
)

// smallSize returns a write size from 1 byte to 64 KiB, mostly tiny or
// within one block.
func (w *worker) smallSize() int {
	var n int
	switch r := w.rng.IntN(10); {
	case r < 3:
		n = 1 + w.rng.IntN(16)
	case r < 7:
		n = 1 + w.rng.IntN(blockSize)
	case r < 8:
		n = blockSize * (1 + w.rng.IntN(maxSmall/blockSize))
	default:
		n = 1 + w.rng.IntN(maxSmall)
	}
	return min(n, w.maxWrite)
}

// largeSize returns a write size above 1 MiB, up to MaxWrite.
func (w *worker) largeSize() int {
	if w.maxWrite <= large {
		return 1 + w.rng.IntN(w.maxWrite)
	}
	return large + 1 + w.rng.IntN(w.maxWrite-large)
}

// offset returns where to write n bytes: often in the first blocks, aligned
// or not, so that threads overwrite each other's ranges; else anywhere that
// keeps the file under maxFileSize.
func (w *worker) offset(n int) int64 {
	var off int
	switch r := w.rng.IntN(10); {
	case r < 3:
		off = blockSize * w.rng.IntN(hotBlocks)
	case r < 6:
		off = w.rng.IntN(blockSize * hotBlocks)
	case r < 8:
		off = w.rng.IntN(1 << 20)
	default:
		off = w.rng.IntN(maxFileSize)
	}
	return int64(min(off, maxFileSize-n))
}

// payload returns n bytes of this thread's random data.
func (w *worker) payload(n int) []byte {
	start := w.rng.IntN(len(w.pool) - n + 1)
	return w.pool[start : start+n]
}

// iovecs splits b into one to eight pieces, some possibly empty.
func (w *worker) iovecs(b []byte) [][]byte {
	k := 1 + w.rng.IntN(8)
	iov := make([][]byte, 0, k)
	for range k - 1 {
		cut := w.rng.IntN(len(b) + 1)
		iov = append(iov, b[:cut])
		b = b[cut:]
	}
	return append(iov, b)
}
