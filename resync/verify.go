package resync

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"

	"golang.org/x/sys/unix"
)

// Range is a span of bytes.
type Range struct{ Off, Len int64 }

// Difference is one way the target differs from the source.
type Difference struct {
	Path   string
	What   string // what differs: "missing", "extra", "kind", "mode", "owner", "size", "target", "links", "content"
	Source string // the source's value, for the report
	Target string // the target's value
	Ranges []Range
}

func (d Difference) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s: %s", d.Path, d.What)
	if d.Source != "" || d.Target != "" {
		fmt.Fprintf(&b, " (source %s, target %s)", d.Source, d.Target)
	}
	for i, r := range d.Ranges {
		if i == 0 {
			b.WriteString(" at")
		}
		if i == 8 {
			fmt.Fprintf(&b, " and %d more ranges", len(d.Ranges)-i)
			break
		}
		fmt.Fprintf(&b, " [%d, %d)", r.Off, r.Off+r.Len)
	}
	return b.String()
}

// Report is the outcome of a verify.
type Report struct {
	Files, Dirs, Symlinks int64 // on the source
	BytesCompared         int64
	BytesSent             int64 // hashes that crossed
	Differences           []Difference
}

// Equal reports whether nothing differs.
func (r *Report) Equal() bool { return len(r.Differences) == 0 }

// Print writes the difference report.
func (r *Report) Print(w io.Writer) {
	for _, d := range r.Differences {
		fmt.Fprintln(w, d)
	}
	verdict := "identical"
	if !r.Equal() {
		verdict = fmt.Sprintf("%d differences", len(r.Differences))
	}
	fmt.Fprintf(w, "%s: %d files, %d directories, %d symlinks, %d bytes compared\n",
		verdict, r.Files, r.Dirs, r.Symlinks, r.BytesCompared)
}

// VerifyOptions tunes Verify.
type VerifyOptions struct {
	BlockSize int       // DefaultBlockSize when 0
	Progress  *Progress // may be nil
}

// Verify compares target with source: names, kinds, modes, owners, sizes,
// symlink targets, hard links, and every block of every file by its hash.
// Modification times are not compared: they say nothing about the data.
func Verify(ctx context.Context, source, target string, o VerifyOptions) (*Report, error) {
	if o.BlockSize <= 0 {
		o.BlockSize = DefaultBlockSize
	}
	if o.Progress == nil {
		o.Progress = &Progress{}
	}
	o.Progress.start()
	var (
		srcs, dsts []Entry
		derr       error
		wg         sync.WaitGroup
	)
	wg.Go(func() { dsts, derr = Scan(ctx, target, []string{CheckpointName}, func(string, error) {}) })
	srcs, err := Scan(ctx, source, nil, func(string, error) {})
	wg.Wait()
	if err == nil {
		err = derr
	}
	if err != nil {
		return nil, err
	}
	r := &Report{}
	var pairs [][2]*Entry
	srcLinks, dstLinks := linkGroups(srcs), linkGroups(dsts)
	i, j := 0, 0
	for i < len(srcs) || j < len(dsts) {
		var c int
		switch {
		case i == len(srcs):
			c = 1
		case j == len(dsts):
			c = -1
		default:
			c = comparePaths(srcs[i].Path, dsts[j].Path)
		}
		if c <= 0 {
			switch srcs[i].Kind {
			case KindFile:
				r.Files++
			case KindDir:
				r.Dirs++
			case KindSymlink:
				r.Symlinks++
			}
		}
		switch {
		case c < 0:
			r.add(Difference{Path: srcs[i].Path, What: "missing", Source: srcs[i].Kind.String()})
			i++
			continue
		case c > 0:
			r.add(Difference{Path: dsts[j].Path, What: "extra", Target: dsts[j].Kind.String()})
			j++
			continue
		}
		e, d := &srcs[i], &dsts[j]
		i, j = i+1, j+1
		if e.Kind != d.Kind {
			r.add(Difference{Path: e.Path, What: "kind", Source: e.Kind.String(), Target: d.Kind.String()})
			continue
		}
		if e.UID != d.UID || e.GID != d.GID {
			r.add(Difference{Path: e.Path, What: "owner", Source: fmt.Sprintf("%d:%d", e.UID, e.GID),
				Target: fmt.Sprintf("%d:%d", d.UID, d.GID)})
		}
		switch e.Kind {
		case KindSymlink:
			if e.Target != d.Target {
				r.add(Difference{Path: e.Path, What: "target", Source: e.Target, Target: d.Target})
			}
			continue
		case KindDir:
			if e.Mode != d.Mode {
				r.add(Difference{Path: e.Path, What: "mode", Source: fmt.Sprintf("%04o", e.Mode), Target: fmt.Sprintf("%04o", d.Mode)})
			}
			continue
		}
		if e.Mode != d.Mode {
			r.add(Difference{Path: e.Path, What: "mode", Source: fmt.Sprintf("%04o", e.Mode), Target: fmt.Sprintf("%04o", d.Mode)})
		}
		if names, have := srcLinks[[2]uint64{e.Dev, e.Ino}], dstLinks[[2]uint64{d.Dev, d.Ino}]; !sameNames(names, have) {
			r.add(Difference{Path: e.Path, What: "links", Source: strings.Join(names, " "), Target: strings.Join(have, " ")})
		}
		if e.Size != d.Size {
			r.add(Difference{Path: e.Path, What: "size", Source: fmt.Sprint(e.Size), Target: fmt.Sprint(d.Size)})
		}
		pairs = append(pairs, [2]*Entry{e, d})
		o.Progress.FilesTotal.Add(1)
		o.Progress.BytesTotal.Add(max(e.Size, d.Size))
	}
	if err := r.compareFiles(ctx, source, target, pairs, o); err != nil {
		return nil, err
	}
	slices.SortStableFunc(r.Differences, func(a, b Difference) int { return comparePaths(a.Path, b.Path) })
	return r, nil
}

// sameNames reports whether two link groups name the same paths (both
// single-named counts as the same).
func sameNames(a, b []string) bool {
	if len(a) <= 1 && len(b) <= 1 {
		return true
	}
	return slices.Equal(a, b)
}

func (r *Report) add(d Difference) { r.Differences = append(r.Differences, d) }

// compareFiles hashes each pair's blocks, several files at once.
func (r *Report) compareFiles(ctx context.Context, source, target string, pairs [][2]*Entry, o VerifyOptions) error {
	var (
		mu    sync.Mutex
		first error
		wg    sync.WaitGroup
		work  = make(chan [2]*Entry)
	)
	for range max(2, runtime.GOMAXPROCS(0)) {
		wg.Go(func() {
			for p := range work {
				d, n, err := compareFile(ctx, source, target, p[0], p[1], o)
				mu.Lock()
				if err != nil && first == nil {
					first = err
				}
				if d != nil {
					r.add(*d)
				}
				r.BytesCompared += n
				r.BytesSent += int64(HashSize) * ((p[1].Size + int64(o.BlockSize) - 1) / int64(o.BlockSize))
				mu.Unlock()
				o.Progress.FilesDone.Add(1)
			}
		})
	}
	for _, p := range pairs {
		if ctx.Err() != nil {
			break
		}
		work <- p
	}
	close(work)
	wg.Wait()
	o.Progress.BytesSent.Store(r.BytesSent)
	if first == nil {
		first = ctx.Err()
	}
	return first
}

// compareFile returns the differing block ranges of one pair of files.
func compareFile(ctx context.Context, source, target string, e, d *Entry, o VerifyOptions) (*Difference, int64, error) {
	open := func(dir string, x *Entry) (*os.File, error) {
		f, err := os.OpenFile(filepath.Join(dir, x.Path), os.O_RDONLY|unix.O_NOFOLLOW, 0)
		if err != nil {
			return nil, fmt.Errorf("resync: verify %s: %w", filepath.Join(dir, x.Path), err)
		}
		return f, nil
	}
	sf, err := open(source, e)
	if err != nil {
		return nil, 0, err
	}
	defer sf.Close()
	df, err := open(target, d)
	if err != nil {
		return nil, 0, err
	}
	defer df.Close()
	var (
		theirs []Hash
		herr   error
		wg     sync.WaitGroup
	)
	wg.Go(func() { theirs, herr = HashBlocks(ctx, df, d.Size, o.BlockSize) })
	ours, err := HashBlocks(ctx, sf, e.Size, o.BlockSize)
	wg.Wait()
	if err == nil {
		err = herr
	}
	if err != nil {
		return nil, 0, fmt.Errorf("resync: verify %s: %w", e.Path, err)
	}
	o.Progress.BytesDone.Add(max(e.Size, d.Size))
	ranges := differingRanges(ours, theirs, int64(o.BlockSize), max(e.Size, d.Size))
	if len(ranges) == 0 {
		return nil, e.Size + d.Size, nil
	}
	return &Difference{Path: e.Path, What: "content", Ranges: ranges}, e.Size + d.Size, nil
}

// differingRanges merges the blocks whose hashes differ, or that one side
// lacks, into byte ranges ending at most at size.
func differingRanges(a, b []Hash, bs, size int64) []Range {
	var out []Range
	for i := 0; i < max(len(a), len(b)); i++ {
		if i < len(a) && i < len(b) && a[i] == b[i] {
			continue
		}
		off := int64(i) * bs
		n := min(bs, size-off)
		if k := len(out) - 1; k >= 0 && out[k].Off+out[k].Len == off {
			out[k].Len += n
			continue
		}
		out = append(out, Range{Off: off, Len: n})
	}
	return out
}
