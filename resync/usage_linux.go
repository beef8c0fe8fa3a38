package resync

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// volExtent is the byte range [off, end) of a volume.
type volExtent struct{ off, end int64 }

// volUsage says which bytes of a volume carry data.
type volUsage struct {
	used []volExtent // sorted, disjoint, not touching
	// holes: the bytes outside used are holes of an image file and read as
	// zeros, so a target must hold zeros there. Otherwise they are free
	// space of the file system, whose content does not matter.
	holes bool
	how   string // for VolumeStats.Usage
}

// volDetectFS names the file system on f from its superblock magic:
// "ext4" (any ext2/3/4), "xfs", or "raw" when it is neither.
func volDetectFS(f *os.File) (string, error) {
	var sb [1082]byte
	n, err := f.ReadAt(sb[:], 0)
	if err != nil && !errors.Is(err, io.EOF) {
		return "", fmt.Errorf("resync: volume read %s at 0: %w", f.Name(), err)
	}
	switch {
	case n >= 4 && string(sb[:4]) == "XFSB":
		return "xfs", nil
	case n == len(sb) && binary.LittleEndian.Uint16(sb[1080:]) == 0xEF53:
		return "ext4", nil
	}
	return "raw", nil
}

// usedExtents finds the bytes of the volume f (of size bytes, named path)
// that the file system fstype uses. Where a file system's free-space map
// could be stale (a journal or log that needs recovery would allocate
// blocks the map shows free), every block counts as used.
func usedExtents(ctx context.Context, f *os.File, path string, size int64, fstype string) (volUsage, error) {
	all := func(why string) volUsage {
		return volUsage{used: []volExtent{{0, size}}, how: "every block: " + why}
	}
	if size == 0 {
		return volUsage{how: "empty"}, nil
	}
	var (
		free     []volExtent
		distrust string
		err      error
	)
	switch fstype {
	case "ext2", "ext3", "ext4":
		free, distrust, err = usageExt(ctx, path, size)
		if err != nil {
			return volUsage{}, fmt.Errorf("resync: volume ext4 map of %s: %w", path, err)
		}
		if distrust != "" {
			return all("ext4 " + distrust), nil
		}
		return volUsage{used: usageComplement(free, size), how: "ext4 free blocks (dumpe2fs)"}, nil
	case "xfs":
		free, distrust, err = usageXFS(ctx, path, size)
		if err != nil {
			return volUsage{}, fmt.Errorf("resync: volume xfs map of %s: %w", path, err)
		}
		if distrust != "" {
			return all("xfs " + distrust), nil
		}
		return volUsage{used: usageComplement(free, size), how: "xfs free space (xfs_db freesp)"}, nil
	case "raw":
		fi, err := f.Stat()
		if err != nil {
			return volUsage{}, fmt.Errorf("resync: volume source %s: %w", path, err)
		}
		if !fi.Mode().IsRegular() {
			return all("raw block device"), nil
		}
		data, err := usageData(f, size)
		if err != nil {
			return volUsage{}, err
		}
		return volUsage{used: data, holes: true, how: "data of the image (SEEK_DATA)"}, nil
	}
	return volUsage{}, fmt.Errorf("resync: volume file-system type %q of %s: want ext4, xfs or raw", fstype, path)
}

// usageData lists the data extents of the image file f up to size: what
// lies between them are holes.
func usageData(f *os.File, size int64) ([]volExtent, error) {
	var data []volExtent
	for off := int64(0); off < size; {
		start, err := f.Seek(off, unix.SEEK_DATA)
		if errors.Is(err, syscall.ENXIO) { // no data after off
			break
		}
		if err != nil {
			return nil, fmt.Errorf("resync: volume seek data %s at %d: %w", f.Name(), off, err)
		}
		if start >= size {
			break
		}
		end, err := f.Seek(start, unix.SEEK_HOLE)
		if err != nil {
			return nil, fmt.Errorf("resync: volume seek hole %s at %d: %w", f.Name(), start, err)
		}
		end = min(end, size)
		data = append(data, volExtent{start, end})
		off = end
	}
	return data, nil
}

// usageComplement turns free extents into the sorted used extents of
// [0, size).
func usageComplement(free []volExtent, size int64) []volExtent {
	slices.SortFunc(free, func(a, b volExtent) int { return cmp.Compare(a.off, b.off) })
	var used []volExtent
	at := int64(0)
	for _, e := range free {
		if e.off > at {
			used = append(used, volExtent{at, e.off})
		}
		at = max(at, e.end)
	}
	if at < size {
		used = append(used, volExtent{at, size})
	}
	return used
}

// usageExt reads the free-block ranges of every group from dumpe2fs. It
// returns why the map cannot be trusted instead when the journal needs
// recovery or the file system is not clean.
func usageExt(ctx context.Context, path string, size int64) (free []volExtent, distrust string, err error) {
	var blockSize int64
	err = usageScan(ctx, func(line string) (bool, error) {
		key, val, ok := strings.Cut(line, ":")
		if !ok {
			return false, nil
		}
		val = strings.TrimSpace(val)
		switch key {
		case "Filesystem features":
			if slices.Contains(strings.Fields(val), "needs_recovery") {
				distrust = "journal needs recovery"
				return true, nil
			}
		case "Filesystem state":
			if val != "clean" {
				distrust = fmt.Sprintf("state is %q", val)
				return true, nil
			}
		case "Block size":
			n, err := strconv.ParseInt(val, 10, 64)
			if err != nil || n <= 0 {
				return false, fmt.Errorf("dumpe2fs: block size %q", val)
			}
			blockSize = n
		case "  Free blocks": // a group's ranges; unindented is the total count
			if blockSize == 0 {
				return false, errors.New("dumpe2fs: free blocks before the block size")
			}
			for r := range strings.SplitSeq(val, ",") {
				if r = strings.TrimSpace(r); r == "" {
					continue
				}
				a, b, isRange := strings.Cut(r, "-")
				if !isRange {
					b = a
				}
				first, err1 := strconv.ParseInt(a, 10, 64)
				last, err2 := strconv.ParseInt(b, 10, 64)
				if err1 != nil || err2 != nil || last < first {
					return false, fmt.Errorf("dumpe2fs: free blocks %q", r)
				}
				e := volExtent{first * blockSize, (last + 1) * blockSize}
				if e.end > size {
					return false, fmt.Errorf("dumpe2fs: free blocks %s end past the volume's %d bytes", r, size)
				}
				free = append(free, e)
			}
		}
		return false, nil
	}, "dumpe2fs", path)
	if err != nil || distrust != "" {
		return nil, distrust, err
	}
	if blockSize == 0 {
		return nil, "", errors.New("dumpe2fs printed no block size")
	}
	return free, "", nil
}

// usageXFS reads the free extents of every AG with xfs_db and turns them
// into byte ranges with the AG geometry. It returns why the map cannot be
// trusted instead when the log holds more than a frozen file system leaves.
func usageXFS(ctx context.Context, path string, size int64) (free []volExtent, distrust string, err error) {
	geo := map[string]int64{}
	var sum, total int64 = 0, -1
	err = usageScan(ctx, func(line string) (bool, error) {
		if name, val, ok := strings.Cut(line, " = "); ok {
			n, err := strconv.ParseInt(strings.TrimSpace(val), 10, 64)
			if err != nil {
				return false, fmt.Errorf("xfs_db: %q", line)
			}
			geo[strings.TrimSpace(name)] = n
			return false, nil
		}
		if v, ok := strings.CutPrefix(line, "total free blocks "); ok {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				return false, fmt.Errorf("xfs_db: %q", line)
			}
			total = n
			return false, nil
		}
		f := strings.Fields(line)
		if len(f) != 3 { // the header, the histogram, other totals
			return false, nil
		}
		var n [3]int64
		for i, s := range f {
			v, err := strconv.ParseInt(s, 10, 64)
			if err != nil {
				return false, nil // the "agno agbno len" header
			}
			n[i] = v
		}
		agno, agbno, length := n[0], n[1], n[2]
		bs, agblocks, agcount := geo["blocksize"], geo["agblocks"], geo["agcount"]
		if bs <= 0 || agblocks <= 0 {
			return false, errors.New("xfs_db: free extents before the geometry")
		}
		if agno < 0 || agno >= agcount || agbno < 0 || length <= 0 || agbno+length > agblocks {
			return false, fmt.Errorf("xfs_db: free extent %q outside the AGs", line)
		}
		e := volExtent{(agno*agblocks + agbno) * bs, (agno*agblocks + agbno + length) * bs}
		if e.end > size {
			return false, fmt.Errorf("xfs_db: free extent %q ends past the volume's %d bytes", line, size)
		}
		free = append(free, e)
		sum += length
		return false, nil
	}, "xfs_db", "-r", "-c", "sb 0", "-c", "p blocksize agblocks agcount logstart", "-c", "freesp -d -s", path)
	if err != nil {
		return nil, "", err
	}
	if sum != total { // what was parsed is not what xfs_db counted
		return nil, "", fmt.Errorf("xfs_db: %d free blocks listed, total says %d", sum, total)
	}
	if geo["logstart"] == 0 {
		return nil, "log is on an external device", nil
	}
	distrust, err = usageXFSLog(ctx, path)
	return free, distrust, err
}

// usageXFSLog says why the free-space btrees on disk may be stale, or ""
// when they are not: the log is clean, or it holds only the superblock
// updates that cover the log of a frozen file system (a snapshot taken
// by LVM or after xfs_freeze). Any other logged item could allocate
// blocks the btrees show free.
func usageXFSLog(ctx context.Context, path string) (distrust string, err error) {
	distrust = "log state unknown"
	dirty := false
	err = usageScan(ctx, func(line string) (bool, error) {
		t := strings.TrimSpace(line)
		switch {
		case !dirty && strings.Contains(t, "state: <CLEAN>"):
			distrust = ""
			return true, nil
		case !dirty && strings.Contains(t, "state: <DIRTY>"):
			dirty, distrust = true, ""
		case !dirty, t == "",
			strings.HasPrefix(t, "LOG REC AT LSN"),
			strings.HasPrefix(t, "===="),
			strings.HasPrefix(t, "TRANS:"),
			strings.HasPrefix(t, "BUF: cnt:"),
			strings.HasPrefix(t, "BUF:") && strings.Contains(t, " start blkno:0x0 "),
			t == "SUPER Block Buffer:":
		default:
			distrust = "log needs recovery"
			return true, nil
		}
		return false, nil
	}, "xfs_logprint", "-t", path)
	if err != nil {
		return "", err
	}
	return distrust, nil
}

// usageScan runs a tool and hands its output to each line by line (output
// can be large: it is never held whole). When each says stop, the rest is
// not needed and the tool is killed.
func usageScan(ctx context.Context, each func(line string) (stop bool, err error), name string, args ...string) error {
	cmd := exec.CommandContext(ctx, name, args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return err
	}
	sc := bufio.NewScanner(out)
	sc.Buffer(make([]byte, 64<<10), 64<<20) // a fragmented group's ranges are one line
	var (
		stop bool
		ferr error
	)
	for !stop && ferr == nil && sc.Scan() {
		stop, ferr = each(sc.Text())
	}
	if ferr == nil {
		ferr = sc.Err()
	}
	if stop || ferr != nil {
		_ = cmd.Process.Kill() // it may have ended already
	}
	werr := cmd.Wait()
	switch {
	case ferr != nil:
		return ferr
	case stop:
		return nil
	case werr != nil:
		return fmt.Errorf("%s: %w: %s", name, werr, strings.TrimSpace(stderr.String()))
	}
	return nil
}
