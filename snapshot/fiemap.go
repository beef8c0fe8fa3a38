//go:build linux

package snapshot

import (
	"os"
	"slices"
	"sort"
	"unsafe"

	"golang.org/x/sys/unix"
)

// FS_IOC_FIEMAP, _IOWR('f', 11, struct fiemap) in the asm-generic encoding;
// unix does not define it.
const fsIocFiemap = 0xC020660B

const (
	fiemapExtentLast      = 0x1
	fiemapExtentUnwritten = 0x800
	// Flags of extents whose physical address does not pin down their
	// data: unknown or not yet allocated, compressed, encrypted, not block
	// aligned, inline in metadata, packed in a tail.
	fiemapExtentOpaque = 0x2 | 0x4 | 0x8 | 0x80 | 0x100 | 0x200 | 0x400
)

// fiemapBatch is how many extents one FS_IOC_FIEMAP call returns at most.
const fiemapBatch = 128

// fiemapRequest is struct fiemap followed by its extents.
type fiemapRequest struct {
	start, length                  uint64
	flags, mapped, count, reserved uint32
	extents                        [fiemapBatch]fiemapExtent
}

// fiemapExtent is struct fiemap_extent.
type fiemapExtent struct {
	logical, physical, length uint64
	_                         [2]uint64
	flags                     uint32
	_                         [3]uint32
}

// extent is where one range of a file lies on the device.
type extent struct {
	logical, physical, length uint64
	flags                     uint32
}

// extents returns f's extents, ascending and not overlapping.
func extents(f *os.File) ([]extent, error) {
	var out []extent
	req := new(fiemapRequest)
	var start uint64
	for {
		*req = fiemapRequest{start: start, length: ^uint64(0), count: fiemapBatch}
		if _, _, errno := unix.Syscall(unix.SYS_IOCTL, f.Fd(), fsIocFiemap, uintptr(unsafe.Pointer(req))); errno != 0 {
			return nil, &os.PathError{Op: "fiemap", Path: f.Name(), Err: errno}
		}
		if req.mapped == 0 {
			return out, nil
		}
		for _, e := range req.extents[:req.mapped] {
			out = append(out, extent{logical: e.logical, physical: e.physical, length: e.length, flags: e.flags})
		}
		last := out[len(out)-1]
		if last.flags&fiemapExtentLast != 0 {
			return out, nil
		}
		start = last.logical + last.length
	}
}

// span is the byte range [off, end).
type span struct{ off, end int64 }

// differing returns the ranges of the first size bytes of a and b, a file
// and its reflink, that may differ. Where both map a byte to the same block
// they hold the same data: a reflinked block is shared and copied before it
// is written to, on xfs and on btrfs alike (even for nodatacow files). Holes
// in both are zeros in both. All else may differ. Both files must have no
// data waiting for writeback, as on a frozen filesystem.
func differing(a, b *os.File, size int64) ([]span, error) {
	ea, err := extents(a)
	if err != nil {
		return nil, err
	}
	eb, err := extents(b)
	if err != nil {
		return nil, err
	}
	return diffExtents(ea, eb, size), nil
}

// diffExtents is differing on the files' extents.
func diffExtents(a, b []extent, size int64) []span {
	cuts := []int64{0, size}
	for _, e := range slices.Concat(a, b) {
		cuts = append(cuts, clip(e.logical, size), clip(e.logical+e.length, size))
	}
	slices.Sort(cuts)
	cuts = slices.Compact(cuts)
	var out []span
	for i := 0; i+1 < len(cuts); i++ {
		lo, hi := cuts[i], cuts[i+1]
		if sameData(extentAt(a, lo), extentAt(b, lo)) {
			continue
		}
		if n := len(out); n > 0 && out[n-1].end == lo {
			out[n-1].end = hi
			continue
		}
		out = append(out, span{lo, hi})
	}
	return out
}

func clip(off uint64, size int64) int64 {
	return int64(min(off, uint64(size)))
}

// extentAt returns the extent of es holding byte off, or nil in a hole.
func extentAt(es []extent, off int64) *extent {
	i := sort.Search(len(es), func(i int) bool { return es[i].logical+es[i].length > uint64(off) })
	if i < len(es) && es[i].logical <= uint64(off) {
		return &es[i]
	}
	return nil
}

// sameData reports whether the bytes at one offset, mapped by x in one file
// and by y in the other (nil for a hole), are certainly equal.
func sameData(x, y *extent) bool {
	if x == nil || y == nil {
		return x == nil && y == nil
	}
	return x.flags&fiemapExtentOpaque == 0 && y.flags&fiemapExtentOpaque == 0 &&
		x.flags&fiemapExtentUnwritten == y.flags&fiemapExtentUnwritten &&
		x.physical-x.logical == y.physical-y.logical
}
