//go:build linux

package resync

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"iter"
	"os"
	"sort"
	"syscall"

	"golang.org/x/sys/unix"
)

// VolumeOptions configures SyncVolume.
type VolumeOptions struct {
	// Source is a snapshot of a volume: a block device or a file-system
	// image file. It must not change while the sync runs.
	Source string
	// Target is the replica: an image file, created or extended as needed
	// (sparse), or a block device at least as large as Source and not in
	// use (opened with O_EXCL, so a mounted device is refused).
	Target string
	// BlockSize is the unit of comparison and transfer; 0 means
	// DefaultBlockSize.
	BlockSize int
	// FSType is the file system on Source: "" detects it from the
	// superblock magic; "ext4" (also "ext2", "ext3"), "xfs", or "raw" to
	// ignore the file system: every block of a device, every data extent
	// of an image file.
	FSType string
	// Progress, when set, is called after each chunk with the bytes of the
	// source's used blocks compared so far and their total.
	Progress func(done, total int64)
}

// VolumeStats says what SyncVolume did. Blocks = Unused + Same + Sent.
type VolumeStats struct {
	Blocks int64 // blocks of the source, the last one possibly short
	// Unused blocks hold nothing the file system uses, or are holes of an
	// image: they are neither read nor sent.
	Unused int64
	Same   int64 // used blocks the target already held
	Sent   int64 // used blocks written on the target
	// BytesSent is what would cross a network: the bytes of the blocks
	// sent plus HashSize per target block hashed.
	BytesSent int64
	Used      int64  // bytes the file system uses (data bytes of a raw image)
	Usage     string // how the used blocks were found, e.g. "ext4 free blocks (dumpe2fs)"
}

const (
	// volChunk bounds the used bytes hashed and compared per round: the
	// blocks to send are read again right after their hashing, while they
	// are still in the page cache.
	volChunk = 64 << 20
	// volCopyMax bounds one read and write of differing blocks.
	volCopyMax = 1 << 20
)

// SyncVolume makes Target hold what Source holds wherever the file system
// on Source uses it: blocks the file system does not use are skipped (a
// fresh sparse target keeps holes there), and of the used blocks only
// those whose hashes differ from the target's are written. The target is
// fsynced before SyncVolume returns. Mounting the target then shows the
// source's file system, ready for file-level replication.
//
// When the free-space map could be stale (an ext4 journal or an xfs log
// that needs recovery, as in a crash-consistent snapshot), every block
// counts as used; Usage says so.
func SyncVolume(ctx context.Context, o VolumeOptions) (VolumeStats, error) {
	var st VolumeStats
	bs := int64(o.BlockSize)
	if bs == 0 {
		bs = DefaultBlockSize
	}
	if bs < 0 {
		return st, fmt.Errorf("resync: volume block size %d", bs)
	}
	src, srcInfo, err := volOpen(o.Source, "source", os.O_RDONLY)
	if err != nil {
		return st, err
	}
	defer src.Close()
	size, err := src.Seek(0, io.SeekEnd)
	if err != nil {
		return st, fmt.Errorf("resync: volume source %s: size: %w", o.Source, err)
	}
	fstype := o.FSType
	if fstype == "" {
		if fstype, err = volDetectFS(src); err != nil {
			return st, err
		}
	}
	u, err := usedExtents(ctx, src, o.Source, size, fstype)
	if err != nil {
		return st, err
	}
	tgt, targetIsFile, fresh, err := volOpenTarget(o.Target, srcInfo, size)
	if err != nil {
		return st, err
	}
	defer tgt.Close()
	st.Usage = u.how
	for _, e := range u.used {
		st.Used += e.end - e.off
	}
	st.Blocks = (size + bs - 1) / bs
	runs := volBlockRuns(u.used, bs)
	if u.holes && !targetIsFile {
		// A device cannot punch holes: compare the source's holes (zeros)
		// with what the device holds like any other block.
		runs = []volRun{{0, st.Blocks}}
	}
	var usedBlocks, total int64
	for _, r := range runs {
		usedBlocks += r.n
		total += min(r.end(bs), size) - r.first*bs
	}
	st.Unused = st.Blocks - usedBlocks

	v := newVolSync(src, tgt, o.Source, o.Target, bs, size, &st)
	switch {
	case fresh:
	case targetIsFile:
		if v.targetHasData, err = volHasData(tgt, size); err != nil {
			return st, err
		}
	default:
		v.targetHasData = true
	}
	if u.holes && targetIsFile && v.targetHasData {
		if err := v.punchGaps(runs); err != nil {
			return st, err
		}
	}
	var done int64
	for chunk := range volChunks(runs, volChunk/bs) {
		if err := ctx.Err(); err != nil {
			return st, fmt.Errorf("resync: volume %s: %w", o.Source, err)
		}
		n, err := v.syncChunk(ctx, chunk)
		if err != nil {
			return st, err
		}
		done += n
		if o.Progress != nil {
			o.Progress(done, total)
		}
	}
	if err := tgt.Sync(); err != nil {
		return st, fmt.Errorf("resync: volume fsync %s: %w", o.Target, err)
	}
	return st, nil
}

// volOpen opens a volume's block device or image file.
func volOpen(path, role string, flag int) (*os.File, fs.FileInfo, error) {
	f, err := os.OpenFile(path, flag, 0)
	if err != nil {
		if errors.Is(err, syscall.EBUSY) {
			return nil, nil, fmt.Errorf("resync: volume %s %s is in use (mounted?): %w", role, path, err)
		}
		return nil, nil, fmt.Errorf("resync: volume %s: %w", role, err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, nil, fmt.Errorf("resync: volume %s %s: %w", role, path, err)
	}
	if !fi.Mode().IsRegular() && (fi.Mode()&fs.ModeDevice == 0 || fi.Mode()&fs.ModeCharDevice != 0) {
		f.Close()
		what := "not a block device or image file"
		if fi.IsDir() {
			what = "a directory"
		}
		return nil, nil, fmt.Errorf("resync: volume %s %s is %s", role, path, what)
	}
	return f, fi, nil
}

// volOpenTarget opens the target for writing, creating or extending an
// image file to size bytes; fresh says it was created here and holds
// nothing.
func volOpenTarget(path string, srcInfo fs.FileInfo, size int64) (f *os.File, isFile, fresh bool, err error) {
	f, err = os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err == nil {
		if err := f.Truncate(size); err != nil {
			f.Close()
			return nil, false, false, fmt.Errorf("resync: volume target %s: %w", path, err)
		}
		return f, true, true, nil
	}
	if !errors.Is(err, fs.ErrExist) {
		return nil, false, false, fmt.Errorf("resync: volume target: %w", err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		return nil, false, false, fmt.Errorf("resync: volume target: %w", err)
	}
	if os.SameFile(fi, srcInfo) {
		return nil, false, false, fmt.Errorf("resync: volume target %s is the source", path)
	}
	flag := os.O_RDWR
	if !fi.Mode().IsRegular() {
		flag |= os.O_EXCL // on a block device: refused while mounted
	}
	f, fi, err = volOpen(path, "target", flag)
	if err != nil {
		return nil, false, false, err
	}
	isFile = fi.Mode().IsRegular()
	have, err := f.Seek(0, io.SeekEnd)
	if err != nil {
		f.Close()
		return nil, false, false, fmt.Errorf("resync: volume target %s: size: %w", path, err)
	}
	switch {
	case have >= size:
	case isFile:
		if err := f.Truncate(size); err != nil {
			f.Close()
			return nil, false, false, fmt.Errorf("resync: volume target %s: extend to %d bytes: %w", path, size, err)
		}
	default:
		f.Close()
		return nil, false, false, fmt.Errorf("resync: volume target %s holds %d bytes, smaller than the %d of the source", path, have, size)
	}
	return f, isFile, false, nil
}

// volHasData says whether the image file f holds any data below size.
func volHasData(f *os.File, size int64) (bool, error) {
	off, err := f.Seek(0, unix.SEEK_DATA)
	if errors.Is(err, syscall.ENXIO) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("resync: volume seek data %s at 0: %w", f.Name(), err)
	}
	return off < size, nil
}

// volRun is a run of n blocks from block first.
type volRun struct{ first, n int64 }

func (r volRun) end(bs int64) int64 { return (r.first + r.n) * bs }

// volBlockRuns lists the runs of blocks that hold any used byte.
func volBlockRuns(used []volExtent, bs int64) []volRun {
	var runs []volRun
	for _, e := range used {
		first, last := e.off/bs, (e.end-1)/bs
		if k := len(runs) - 1; k >= 0 && runs[k].first+runs[k].n >= first {
			runs[k].n = max(runs[k].n, last+1-runs[k].first)
			continue
		}
		runs = append(runs, volRun{first, last + 1 - first})
	}
	return runs
}

// volChunks cuts runs into chunks of at most per blocks.
func volChunks(runs []volRun, per int64) iter.Seq[[]volRun] {
	per = max(per, 1)
	return func(yield func([]volRun) bool) {
		var chunk []volRun
		var have int64
		for _, r := range runs {
			for r.n > 0 {
				take := min(r.n, per-have)
				chunk = append(chunk, volRun{r.first, take})
				have += take
				r.first += take
				r.n -= take
				if have == per {
					if !yield(chunk) {
						return
					}
					chunk, have = nil, 0
				}
			}
		}
		if have > 0 {
			yield(chunk)
		}
	}
}

// volSync is one SyncVolume at work.
type volSync struct {
	src, tgt         *os.File
	srcName, tgtName string
	bs, size         int64
	st               *VolumeStats
	// targetHasData is false for a target that holds only holes below
	// size: its blocks are known to be zeros without reading them.
	targetHasData bool
	buf           []byte // whole blocks, about volCopyMax
	zeros         []byte // a block of zeros
}

func newVolSync(src, tgt *os.File, srcName, tgtName string, bs, size int64, st *VolumeStats) *volSync {
	return &volSync{
		src: src, tgt: tgt, srcName: srcName, tgtName: tgtName, bs: bs, size: size, st: st,
		buf:   make([]byte, max(1, volCopyMax/bs)*bs),
		zeros: make([]byte, bs),
	}
}

// blockLen is the length of the block at byte offset off.
func (v *volSync) blockLen(off int64) int64 { return min(v.bs, v.size-off) }

// syncChunk compares the blocks of chunk and writes those that differ. It
// returns the bytes compared.
func (v *volSync) syncChunk(ctx context.Context, chunk []volRun) (int64, error) {
	if !v.targetHasData {
		return v.copyChunk(chunk)
	}
	srcSpan := newVolSpan(v.src, v.srcName, chunk, v.bs, v.size)
	srcHashes, err := srcSpan.hash(ctx)
	if err != nil {
		return 0, err
	}
	tgtHashes, err := newVolSpan(v.tgt, v.tgtName, chunk, v.bs, v.size).hash(ctx)
	if err != nil {
		return 0, err
	}
	v.st.BytesSent += int64(len(tgtHashes)) * HashSize
	var pend volExtent // differing blocks not written yet
	i := 0
	for _, r := range chunk {
		for off := r.first * v.bs; off < min(r.end(v.bs), v.size); off += v.bs {
			n := v.blockLen(off)
			if srcHashes[i] == tgtHashes[i] {
				v.st.Same++
			} else {
				if pend.end != off || pend.end-pend.off+n > int64(len(v.buf)) {
					if err := v.copy(pend); err != nil {
						return 0, err
					}
					pend = volExtent{off, off}
				}
				pend.end += n
				v.st.Sent++
			}
			i++
		}
	}
	if err := v.copy(pend); err != nil {
		return 0, err
	}
	return srcSpan.size(), nil
}

// copyChunk copies chunk to a target that holds only holes: no hashes are
// needed, and blocks of zeros are left as holes.
func (v *volSync) copyChunk(chunk []volRun) (int64, error) {
	var done int64
	for _, r := range chunk {
		end := min(r.end(v.bs), v.size)
		for off := r.first * v.bs; off < end; {
			b := v.buf[:min(int64(len(v.buf)), end-off)]
			if err := v.read(b, off); err != nil {
				return 0, err
			}
			nonzero := int64(-1) // where in b the blocks to write start
			for i := int64(0); ; i += v.bs {
				last := i >= int64(len(b))
				if !last {
					blk := b[i:min(i+v.bs, int64(len(b)))]
					if !bytes.Equal(blk, v.zeros[:len(blk)]) {
						if nonzero < 0 {
							nonzero = i
						}
						v.st.Sent++
						continue
					}
					v.st.Same++
				}
				if nonzero >= 0 {
					if err := v.write(b[nonzero:min(i, int64(len(b)))], off+nonzero); err != nil {
						return 0, err
					}
					nonzero = -1
				}
				if last {
					break
				}
			}
			off += int64(len(b))
			done += int64(len(b))
		}
	}
	return done, nil
}

// copy writes the source's bytes of e on the target.
func (v *volSync) copy(e volExtent) error {
	if e.end == e.off {
		return nil
	}
	b := v.buf[:e.end-e.off]
	if err := v.read(b, e.off); err != nil {
		return err
	}
	return v.write(b, e.off)
}

func (v *volSync) read(b []byte, off int64) error {
	if _, err := v.src.ReadAt(b, off); err != nil {
		return fmt.Errorf("resync: volume read %s at %d: %w", v.srcName, off, err)
	}
	return nil
}

func (v *volSync) write(b []byte, off int64) error {
	if _, err := v.tgt.WriteAt(b, off); err != nil {
		return fmt.Errorf("resync: volume write %s at %d: %w", v.tgtName, off, err)
	}
	v.st.BytesSent += int64(len(b))
	return nil
}

// punchGaps makes the target's bytes between runs (holes of the source
// image) holes too: idempotent, and cheaper than comparing zeros.
func (v *volSync) punchGaps(runs []volRun) error {
	at := int64(0)
	punch := func(end int64) error {
		if end <= at {
			return nil
		}
		err := unix.Fallocate(int(v.tgt.Fd()), unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, at, end-at)
		if err != nil {
			return fmt.Errorf("resync: volume punch hole %s at %d: %w", v.tgtName, at, err)
		}
		return nil
	}
	for _, r := range runs {
		if err := punch(r.first * v.bs); err != nil {
			return err
		}
		at = r.end(v.bs)
	}
	return punch(v.size)
}

// volSpan reads the blocks of some runs of a volume as one contiguous
// stream, so that HashBlocks hashes many small runs in large reads.
type volSpan struct {
	f      *os.File
	name   string
	bs     int
	segs   []volExtent // byte ranges of f, in order
	starts []int64     // offset in the stream of each seg
	total  int64
}

func newVolSpan(f *os.File, name string, runs []volRun, bs, size int64) *volSpan {
	s := &volSpan{f: f, name: name, bs: int(bs)}
	for _, r := range runs {
		e := volExtent{r.first * bs, min(r.end(bs), size)}
		s.segs = append(s.segs, e)
		s.starts = append(s.starts, s.total)
		s.total += e.end - e.off
	}
	return s
}

func (s *volSpan) size() int64 { return s.total }

// volReadError is a failed read of a volume, at its real offset.
type volReadError struct {
	name string
	off  int64
	err  error
}

func (e *volReadError) Error() string {
	return fmt.Sprintf("resync: volume read %s at %d: %v", e.name, e.off, e.err)
}

func (e *volReadError) Unwrap() error { return e.err }

func (s *volSpan) ReadAt(p []byte, off int64) (int, error) {
	i := sort.Search(len(s.segs), func(i int) bool { return s.starts[i]+s.segs[i].end-s.segs[i].off > off })
	n := 0
	for ; n < len(p) && i < len(s.segs); i++ {
		seg := s.segs[i]
		at := seg.off + off + int64(n) - s.starts[i]
		m := int(min(int64(len(p)-n), seg.end-at))
		k, err := s.f.ReadAt(p[n:n+m], at)
		n += k
		if k < m {
			if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF // the volume shrank
			}
			return n, &volReadError{s.name, at + int64(k), err}
		}
	}
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

// hash hashes every block of the span.
func (s *volSpan) hash(ctx context.Context) ([]Hash, error) {
	hashes, err := HashBlocks(ctx, s, s.total, s.bs)
	var re *volReadError
	switch {
	case errors.As(err, &re):
		return nil, re
	case err != nil:
		return nil, fmt.Errorf("resync: volume hash %s: %w", s.name, err)
	}
	return hashes, nil
}
