package bench

import (
	"fmt"
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
