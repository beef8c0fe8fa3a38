package bench

import (
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// PwriteLoop issues n pwrite(2) calls of size bytes into path, cycling over
// span bytes so the file stays in the page cache, and returns the time taken.
func PwriteLoop(path string, n, size int, span int64) (time.Duration, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE, 0o644)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	buf := make([]byte, size)
	for i := range buf {
		buf[i] = byte(i)
	}
	blocks := span / int64(size)
	fd := int(f.Fd())
	start := time.Now()
	for i := 0; i < n; i++ {
		buf[0] = byte(i)
		if _, err := unix.Pwrite(fd, buf, int64(i)%blocks*int64(size)); err != nil {
			return 0, fmt.Errorf("bench: pwrite %s: %w", path, err)
		}
	}
	return time.Since(start), nil
}

// SeqWrite writes total bytes of random-looking data to a new file at path
// in blocks of block bytes, and returns the time the writes took (no
// fsync: the rate at which a writer hands data to the kernel).
func SeqWrite(path string, total int64, block int) (time.Duration, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	// Incompressible, so compression cannot flatter the replicated rate.
	buf := make([]byte, block)
	rand.NewChaCha8([32]byte{1}).Read(buf)
	start := time.Now()
	for off := int64(0); off < total; off += int64(block) {
		binary.LittleEndian.PutUint64(buf, uint64(off))
		if _, err := f.Write(buf[:min(int64(block), total-off)]); err != nil {
			return 0, fmt.Errorf("bench: write %s: %w", path, err)
		}
	}
	return time.Since(start), nil
}
