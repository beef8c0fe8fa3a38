package journal

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// On-disk format: a segment's header (drawn in doc.go) and its file name,
// the first seq in segNameDigits zero-padded decimal digits, then segExt.
const (
	segMagic       = "WCJS"
	segVersion     = 1
	segHeaderSize  = 16
	segOffVersion  = 4
	segOffReserved = 5 // 3 bytes
	segOffFirstSeq = 8
	segNameDigits  = 20 // enough for any uint64, so names sort as seqs do
	segExt         = ".wcs"
)

// scanChunk is how much of a payload is read at a time to check its CRC at
// open, so that a header claiming MaxPayload costs no more memory than this.
const scanChunk = 1 << 20

// A segment is one file of a spool: a header, then batches whose seqs follow
// one another.
type segment struct {
	path  string
	f     *os.File // read by cursors; written only while it is the newest
	first uint64   // the seq its first batch has or will have: its name and header
	last  uint64   // the last seq written to it; first-1 while it has no batch
	size  int64    // bytes written, header included
	held  int      // batches of the spool that live here
	dirty bool     // written since the last Sync
	// Guarded by the spool's mu: a removed segment's file stays open until
	// the last cursor reading it is done, so that a Release never fails a
	// read in flight.
	readers int
	gone    bool
}

func segmentName(first uint64) string {
	return fmt.Sprintf("%0*d%s", segNameDigits, first, segExt)
}

// parseSegmentName returns the first seq a segment's name carries. Other
// names are not segments; seq 0 is never one.
func parseSegmentName(name string) (uint64, bool) {
	digits, ok := strings.CutSuffix(name, segExt)
	if !ok || len(digits) != segNameDigits {
		return 0, false
	}
	first, err := strconv.ParseUint(digits, 10, 64)
	return first, err == nil && first > 0
}

// createSegment creates the segment that starts at seq first in dir. The
// file must not exist: a segment is never written twice.
func createSegment(dir string, first uint64) (*segment, error) {
	path := filepath.Join(dir, segmentName(first))
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, fmt.Errorf("journal: create segment: %w", err)
	}
	var h [segHeaderSize]byte
	copy(h[:], segMagic)
	h[segOffVersion] = segVersion
	binary.LittleEndian.PutUint64(h[segOffFirstSeq:], first)
	if _, err := f.WriteAt(h[:], 0); err != nil {
		f.Close()
		os.Remove(path) // a segment without its header would be cut away at open anyway
		return nil, fmt.Errorf("journal: segment %s: writing the header: %w", path, err)
	}
	return &segment{path: path, f: f, first: first, last: first - 1, size: segHeaderSize, dirty: true}, nil
}

// append writes the batch b, whose last seq is last, at the segment's end.
// On failure it cuts off whatever part of b reached the file, so that the
// segment still ends with a whole batch; intact is false when even that
// failed and nothing more may be written to the segment.
func (g *segment) append(b []byte, last uint64) (off int64, intact bool, err error) {
	off = g.size
	if _, err := g.f.WriteAt(b, off); err != nil {
		err = fmt.Errorf("journal: segment %s: writing batch at offset %d: %w", g.path, off, err)
		if terr := g.f.Truncate(off); terr != nil {
			return 0, false, fmt.Errorf("%w; cutting the partial batch off failed too: %v", err, terr)
		}
		return 0, true, err
	}
	g.size += int64(len(b))
	g.last = last
	g.dirty = true
	return off, true, nil
}

// readBatch reads the batch of seqs first to last, n bytes at off, into buf
// and checks it again: the disk may have changed it since it was written.
func (g *segment) readBatch(buf []byte, off int64, n int, first, last uint64) ([]byte, error) {
	buf = slices.Grow(buf[:0], n)[:n]
	if _, err := g.f.ReadAt(buf, off); err != nil {
		if err == io.EOF {
			err = corruptf("the file ends inside the batch")
		}
		return buf, fmt.Errorf("journal: segment %s: batch at offset %d: %w", g.path, off, err)
	}
	h, err := verifyBatch(buf)
	if err == nil && (h.firstSeq != first || h.firstSeq+uint64(h.count-1) != last) {
		err = corruptf("seqs %d to %d, want %d to %d", h.firstSeq, h.firstSeq+uint64(h.count-1), first, last)
	}
	if err != nil {
		return buf, fmt.Errorf("journal: segment %s: batch at offset %d: %w", g.path, off, err)
	}
	return buf, nil
}

// unlink deletes the segment's file; its descriptor stays usable.
func (g *segment) unlink() error {
	if err := os.Remove(g.path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("journal: remove segment: %w", err)
	}
	return nil
}

// verifyBatch checks that b is exactly one batch with a good header and CRC,
// without decoding its records.
func verifyBatch(b []byte) (header, error) {
	h, err := batchHeader(b)
	if err != nil {
		return h, err
	}
	return h, checkCRC(b, &h)
}

// batchHeader is verifyBatch without the CRC.
func batchHeader(b []byte) (header, error) {
	h, err := parseHeader(b)
	switch {
	case err != nil:
		return h, err
	case len(b) < h.size():
		return h, truncatedf("payload has %d of %d bytes", len(b)-HeaderSize, h.payloadLen)
	case len(b) > h.size():
		return h, corruptf("%d bytes after the batch's %d", len(b)-h.size(), h.size())
	}
	return h, nil
}

// scan checks the segment's header and batches, passing each good batch to
// add in order, and sets g.last and g.size. It returns where the trusted part
// of the file ends and, if the file goes on past it, why: an error wrapping
// ErrTruncated or ErrCorrupt (a torn write, a bad CRC, a seq break) or an I/O
// error. An end below segHeaderSize means the header itself is bad. buf is
// scratch space kept between calls.
func (g *segment) scan(buf *[]byte, add func(h *header, off int64)) (end int64, err error) {
	fi, err := g.f.Stat()
	if err != nil {
		return 0, fmt.Errorf("journal: segment %s: %w", g.path, err)
	}
	size := fi.Size()
	if err := g.scanHeader(size); err != nil {
		return 0, fmt.Errorf("journal: segment %s: header: %w", g.path, err)
	}
	g.last = g.first - 1
	off := int64(segHeaderSize)
	for off < size {
		h, err := g.scanBatch(buf, off, size)
		if err != nil {
			g.size = off
			return off, fmt.Errorf("journal: segment %s: batch at offset %d: %w", g.path, off, err)
		}
		add(&h, off)
		g.last = h.firstSeq + uint64(h.count-1)
		off += int64(h.size())
	}
	g.size = off
	return off, nil
}

func (g *segment) scanHeader(size int64) error {
	var h [segHeaderSize]byte
	n := int(min(size, segHeaderSize))
	if _, err := g.f.ReadAt(h[:n], 0); err != nil {
		return err
	}
	if m := min(n, len(segMagic)); string(h[:m]) != segMagic[:m] {
		return corruptf("bad magic %q at byte 0, want %q", h[:m], segMagic)
	}
	if n < segHeaderSize {
		return truncatedf("%d of %d bytes", n, segHeaderSize)
	}
	if v := h[segOffVersion]; v != segVersion {
		return corruptf("unknown version %d at byte %d", v, segOffVersion)
	}
	if r := h[segOffReserved:segOffFirstSeq]; string(r) != "\x00\x00\x00" {
		return corruptf("reserved bytes %x at byte %d, want 0", r, segOffReserved)
	}
	if first := binary.LittleEndian.Uint64(h[segOffFirstSeq:]); first != g.first {
		return corruptf("first seq %d at byte %d, the name says %d", first, segOffFirstSeq, g.first)
	}
	return nil
}

// scanBatch checks the batch at off in a file of size bytes. The CRC is
// computed a chunk at a time, so a hostile length costs little.
func (g *segment) scanBatch(buf *[]byte, off, size int64) (header, error) {
	var hb [HeaderSize]byte
	n := min(size-off, HeaderSize)
	if _, err := g.f.ReadAt(hb[:n], off); err != nil {
		return header{}, err
	}
	h, err := parseHeader(hb[:n])
	if err != nil {
		return h, err
	}
	if have := size - off - HeaderSize; have < int64(h.payloadLen) {
		return h, truncatedf("payload has %d of %d bytes", have, h.payloadLen)
	}
	sum := crc32.Update(0, castagnoli, hb[:offCRC])
	for at, left := off+HeaderSize, int64(h.payloadLen); left > 0; {
		n := int(min(left, scanChunk))
		*buf = slices.Grow((*buf)[:0], n)
		chunk := (*buf)[:n]
		if _, err := g.f.ReadAt(chunk, at); err != nil {
			return h, err
		}
		sum = crc32.Update(sum, castagnoli, chunk)
		at += int64(len(chunk))
		left -= int64(len(chunk))
	}
	if sum != h.crc {
		return h, corruptf("crc mismatch (stored %#08x, computed %#08x)", h.crc, sum)
	}
	if h.firstSeq != g.last+1 {
		return h, corruptf("first seq %d, want %d: seqs must be consecutive", h.firstSeq, g.last+1)
	}
	return h, nil
}

// loadSegments opens the segments in dir, in seq order, and passes each good
// batch to add. From the first bad batch on nothing is trusted: its segment is
// cut just before it (or removed, if its header is bad), every later segment
// is removed, and the repair is made durable before loadSegments returns.
func loadSegments(dir *os.File, log *slog.Logger, add func(g *segment, h *header, off int64)) ([]*segment, error) {
	des, err := dir.ReadDir(-1)
	if err != nil {
		return nil, fmt.Errorf("journal: spool: reading %s: %w", dir.Name(), err)
	}
	// Fixed-width names sort as their seqs.
	slices.SortFunc(des, func(a, b fs.DirEntry) int { return strings.Compare(a.Name(), b.Name()) })
	var segs []*segment
	closeAll := func() {
		for _, g := range segs {
			g.f.Close()
		}
	}
	for _, de := range des {
		first, ok := parseSegmentName(de.Name())
		if !ok || !de.Type().IsRegular() {
			continue
		}
		path := filepath.Join(dir.Name(), de.Name())
		f, err := os.OpenFile(path, os.O_RDWR, 0)
		if err != nil {
			closeAll()
			return nil, fmt.Errorf("journal: open segment: %w", err)
		}
		segs = append(segs, &segment{path: path, f: f, first: first})
	}
	var buf []byte
	for i, g := range segs {
		var end int64
		var err error
		if i > 0 && g.first != segs[i-1].last+1 {
			err = fmt.Errorf("journal: segment %s: starts at seq %d, but %s ends at seq %d: %w",
				g.path, g.first, segs[i-1].path, segs[i-1].last, ErrCorrupt)
		} else {
			end, err = g.scan(&buf, func(h *header, off int64) { add(g, h, off) })
		}
		if err == nil {
			continue
		}
		if !IsCorrupt(err) && !IsTruncated(err) {
			closeAll()
			return nil, err
		}
		keep, err := repair(dir, segs, i, end, err, log)
		if err != nil {
			closeAll()
			return nil, err
		}
		return keep, nil
	}
	return segs, nil
}

// repair cuts segs[bad] at end, or removes it when end leaves no room for its
// header, removes every segment after it, and syncs what it changed. why is
// what the scan found at end. It returns the segments kept.
func repair(dir *os.File, segs []*segment, bad int, end int64, why error, log *slog.Logger) ([]*segment, error) {
	g := segs[bad]
	keep := segs[:bad]
	if end >= segHeaderSize {
		keep = segs[:bad+1]
		if err := g.f.Truncate(end); err != nil {
			return nil, fmt.Errorf("journal: segment %s: cutting at offset %d: %w", g.path, end, err)
		}
		if err := g.f.Sync(); err != nil {
			return nil, fmt.Errorf("journal: segment %s: fsync after cutting at offset %d: %w", g.path, end, err)
		}
		log.Warn("spool: cut a torn or corrupt tail; nothing after it is trusted",
			"file", g.path, "offset", end, "err", why)
	} else {
		g.f.Close() // no cursor exists yet
		if err := g.unlink(); err != nil {
			return nil, err
		}
		log.Warn("spool: removed a segment whose header or place in the seq order is bad; nothing after it is trusted",
			"file", g.path, "offset", end, "err", why)
	}
	for _, later := range segs[bad+1:] {
		later.f.Close()
		if err := later.unlink(); err != nil {
			return nil, err
		}
		log.Warn("spool: removed a segment after a corrupt one", "file", later.path, "first_seq", later.first)
	}
	if err := syncDir(dir); err != nil {
		return nil, err
	}
	return keep, nil
}

// syncDir makes the creation and removal of files in dir durable.
func syncDir(dir *os.File) error {
	if err := dir.Sync(); err != nil {
		return fmt.Errorf("journal: spool: fsync directory %s: %w", dir.Name(), err)
	}
	return nil
}

// isNoSpace reports whether err means the file system or the user's quota is
// full, which the spool reports as ErrSpoolFull.
func isNoSpace(err error) bool {
	return errors.Is(err, unix.ENOSPC) || errors.Is(err, unix.EDQUOT)
}
