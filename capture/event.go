package capture

import (
	"errors"
	"fmt"
	"unsafe"

	"github.com/writecap/writecap/bpf"
)

// Wire constants shared with bpf/capture.h, taken from the generated types.
const (
	maxRoots = int(bpf.CaptureLimitsMAX_ROOTS)
	cntMax   = int(bpf.CaptureCounterCNT_MAX)
	noRoot   = ^uint32(0)

	hdrSize   = int(unsafe.Sizeof(bpf.CaptureEvHdr{}))
	writeSize = int(unsafe.Sizeof(bpf.CaptureEvWrite{}))
	metaSize  = int(unsafe.Sizeof(bpf.CaptureEvMeta{}))
)

const (
	evWrite     = uint32(bpf.CaptureEvTypeEV_WRITE)
	evOpen      = uint32(bpf.CaptureEvTypeEV_OPEN)
	evTruncate  = uint32(bpf.CaptureEvTypeEV_TRUNCATE)
	evFallocate = uint32(bpf.CaptureEvTypeEV_FALLOCATE)
	evMkdir     = uint32(bpf.CaptureEvTypeEV_MKDIR)
	evRmdir     = uint32(bpf.CaptureEvTypeEV_RMDIR)
	evUnlink    = uint32(bpf.CaptureEvTypeEV_UNLINK)
	evRename    = uint32(bpf.CaptureEvTypeEV_RENAME)
	evLink      = uint32(bpf.CaptureEvTypeEV_LINK)
	evSymlink   = uint32(bpf.CaptureEvTypeEV_SYMLINK)
	evChmod     = uint32(bpf.CaptureEvTypeEV_CHMOD)
	evChown     = uint32(bpf.CaptureEvTypeEV_CHOWN)
	evUtimes    = uint32(bpf.CaptureEvTypeEV_UTIMES)
	evFsync     = uint32(bpf.CaptureEvTypeEV_FSYNC)
	evSyncfs    = uint32(bpf.CaptureEvTypeEV_SYNCFS)
	evSync      = uint32(bpf.CaptureEvTypeEV_SYNC)
	evMmap      = uint32(bpf.CaptureEvTypeEV_MMAP)
	evMsync     = uint32(bpf.CaptureEvTypeEV_MSYNC)

	fDirty       = uint32(bpf.CaptureEvFlagEVF_DIRTY)
	fSync        = uint32(bpf.CaptureEvFlagEVF_SYNC)
	fLast        = uint32(bpf.CaptureEvFlagEVF_LAST)
	fNoFollow    = uint32(bpf.CaptureEvFlagEVF_NOFOLLOW)
	fPathTrunc   = uint32(bpf.CaptureEvFlagEVF_PATH_TRUNC)
	fBaseOutside = uint32(bpf.CaptureEvFlagEVF_BASE_OUTSIDE)
	fFD          = uint32(bpf.CaptureEvFlagEVF_FD)
	fEmptyPath   = uint32(bpf.CaptureEvFlagEVF_EMPTY_PATH)
	fCreated     = uint32(bpf.CaptureEvFlagEVF_CREATED)
)

// ErrBadEvent marks a ring buffer sample that does not decode.
var ErrBadEvent = errors.New("capture: malformed kernel event")

// checkEvent validates a raw sample before it is viewed through the
// generated structs; the views below are only safe after it.
func checkEvent(b []byte) error {
	if len(b) < hdrSize {
		return fmt.Errorf("sample of %d bytes, header needs %d: %w", len(b), hdrSize, ErrBadEvent)
	}
	h := (*bpf.CaptureEvHdr)(unsafe.Pointer(&b[0]))
	switch t := h.Type; {
	case t == evWrite:
		if len(b) < writeSize {
			return fmt.Errorf("seq %d: write sample of %d bytes, needs %d: %w", h.Seq, len(b), writeSize, ErrBadEvent)
		}
		w := (*bpf.CaptureEvWrite)(unsafe.Pointer(&b[0]))
		if int(w.Len) > len(b)-writeSize {
			return fmt.Errorf("seq %d: write claims %d data bytes, sample holds %d: %w", h.Seq, w.Len, len(b)-writeSize, ErrBadEvent)
		}
		if w.Lo > w.Hi {
			return fmt.Errorf("seq %d: write range [%d,%d) inverted: %w", h.Seq, w.Lo, w.Hi, ErrBadEvent)
		}
	case t >= evOpen && t <= evMsync:
		if len(b) < metaSize {
			return fmt.Errorf("seq %d: %d-byte sample for event type %d, needs %d: %w", h.Seq, len(b), t, metaSize, ErrBadEvent)
		}
	default:
		return fmt.Errorf("seq %d: unknown event type %d: %w", h.Seq, t, ErrBadEvent)
	}
	return nil
}

func hdrOf(b []byte) *bpf.CaptureEvHdr     { return (*bpf.CaptureEvHdr)(unsafe.Pointer(&b[0])) }
func writeOf(b []byte) *bpf.CaptureEvWrite { return (*bpf.CaptureEvWrite)(unsafe.Pointer(&b[0])) }
func metaOf(b []byte) *bpf.CaptureEvMeta   { return (*bpf.CaptureEvMeta)(unsafe.Pointer(&b[0])) }

// writeData is the payload that follows an ev_write header.
func writeData(b []byte) []byte {
	w := writeOf(b)
	return b[writeSize : writeSize+int(w.Len)]
}

func cstr(a *[512]int8) string {
	b := unsafe.Slice((*byte)(unsafe.Pointer(&a[0])), len(a))
	for i, c := range b {
		if c == 0 {
			return string(b[:i])
		}
	}
	return string(b)
}

type lossKey = bpf.CaptureLossKey

const (
	cntRingFull     = int(bpf.CaptureCounterCNT_RING_FULL)
	cntMetaLost     = int(bpf.CaptureCounterCNT_META_LOST)
	cntInflightFull = int(bpf.CaptureCounterCNT_INFLIGHT_FULL)
	cntLossFull     = int(bpf.CaptureCounterCNT_LOSS_FULL)
	cntTooDeep      = int(bpf.CaptureCounterCNT_TOO_DEEP)
	cntUringNames   = int(bpf.CaptureCounterCNT_URING_NAMES)
	cntAIOMany      = int(bpf.CaptureCounterCNT_AIO_MANY)
	cntUringLost    = int(bpf.CaptureCounterCNT_URING_LOST)
	cntUringTrunc   = int(bpf.CaptureCounterCNT_URING_TRUNC)
	maxDepth        = int(bpf.CaptureLimitsMAX_DEPTH)
)

type metaEv = bpf.CaptureEvMeta
