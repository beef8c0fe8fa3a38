package resync

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"slices"
	"sort"
	"strings"
	"sync"
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
	Skipped               int64 // entries and ranges left out: changed on the master since
	Differences           []Difference
	// Seq, for a running scenario, is the replica's applied seq the
	// comparison was made at.
	Seq uint64 `json:",omitempty"`
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
	fmt.Fprintf(w, "%s: %d files, %d directories, %d symlinks, %d bytes compared", verdict, r.Files, r.Dirs, r.Symlinks, r.BytesCompared)
	if r.Seq != 0 {
		fmt.Fprintf(w, " at seq %d, %d changed since and left out", r.Seq, r.Skipped)
	}
	fmt.Fprintln(w)
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
	var (
		theirs *Manifest
		terr   error
		wg     sync.WaitGroup
	)
	wg.Go(func() { theirs, terr = BuildManifest(ctx, target, o.BlockSize, []string{CheckpointName}, o.Progress) })
	ours, err := BuildManifest(ctx, source, o.BlockSize, nil, o.Progress)
	wg.Wait()
	if err == nil {
		err = terr
	}
	if err != nil {
		return nil, err
	}
	return CompareManifests(ours, theirs, nil), nil
}

// Changed is what changed on a master after the point a replica's manifest
// describes: a comparison leaves it out rather than call it a difference.
type Changed struct {
	whole  map[string]bool // the entry, and all beneath a directory
	made   map[string]bool // whether the entry exists, and its kind
	attrs  map[string]bool // its mode and owner
	ranges map[string][]Range
	merged map[string]bool // ranges[p] is sorted and merged
}

// NewChanged returns an empty Changed.
func NewChanged() *Changed {
	return &Changed{whole: map[string]bool{}, made: map[string]bool{}, attrs: map[string]bool{},
		ranges: map[string][]Range{}, merged: map[string]bool{}}
}

// Entry marks p, and everything beneath it, as changed.
func (c *Changed) Entry(p string) { c.whole[p] = true }

// Made marks whether p exists, and as what, as changed.
func (c *Changed) Made(p string) { c.made[p] = true }

// Attrs marks p's mode and owner as changed.
func (c *Changed) Attrs(p string) { c.attrs[p] = true }

// Bytes marks n bytes of p from off as changed.
func (c *Changed) Bytes(p string, off, n int64) {
	c.ranges[p] = append(c.ranges[p], Range{Off: off, Len: n})
	delete(c.merged, p)
}

// rangesOf returns p's ranges sorted and merged, merging them once.
func (c *Changed) rangesOf(p string) []Range {
	rs := c.ranges[p]
	if c.merged[p] || len(rs) < 2 {
		return rs
	}
	slices.SortFunc(rs, func(a, b Range) int { return cmp.Compare(a.Off, b.Off) })
	out := rs[:1]
	for _, r := range rs[1:] {
		last := &out[len(out)-1]
		if r.Off <= last.Off+last.Len {
			last.Len = max(last.Len, r.Off+r.Len-last.Off)
			continue
		}
		out = append(out, r)
	}
	c.ranges[p], c.merged[p] = out, true
	return out
}

// Overlaps reports whether n bytes at off meet any of rs, sorted and merged.
func Overlaps(rs []Range, off, n int64) bool {
	i := sort.Search(len(rs), func(i int) bool { return rs[i].Off+rs[i].Len > off })
	return i < len(rs) && rs[i].Off < off+n
}

// Named reports whether p's name changed since: p or a directory above it
// moved or was replaced, or p was made.
func (c *Changed) Named(p string) bool {
	return c.entry(p) || c != nil && c.made[p]
}

func (c *Changed) anyNamed(ps []string) bool {
	for _, p := range ps {
		if c.Named(p) {
			return true
		}
	}
	return false
}

// Ranges are the bytes of p marked as changed, sorted and merged.
func (c *Changed) Ranges(p string) []Range {
	if c == nil {
		return nil
	}
	return c.rangesOf(p)
}

func (c *Changed) entry(p string) bool {
	if c == nil {
		return false
	}
	if c.whole[""] {
		return true // the root's names changed: everything beneath it
	}
	for {
		if c.whole[p] {
			return true
		}
		i := strings.LastIndexByte(p, '/')
		if i < 0 {
			return false
		}
		p = p[:i]
	}
}

func (c *Changed) block(p string, off, n int64) bool {
	return c != nil && Overlaps(c.rangesOf(p), off, n)
}

// CompareManifests reports how dst differs from src, leaving out entries
// and blocks that changed marks (counted in Skipped).
func CompareManifests(src, dst *Manifest, changed *Changed) *Report {
	r := &Report{}
	srcLinks, dstLinks := linkGroups(src.Entries), linkGroups(dst.Entries)
	bs := int64(src.BlockSize)
	i, j := 0, 0
	for i < len(src.Entries) || j < len(dst.Entries) {
		var c int
		switch {
		case i == len(src.Entries):
			c = 1
		case j == len(dst.Entries):
			c = -1
		default:
			c = comparePaths(src.Entries[i].Path, dst.Entries[j].Path)
		}
		if c <= 0 {
			switch src.Entries[i].Kind {
			case KindFile:
				r.Files++
			case KindDir:
				r.Dirs++
			case KindSymlink:
				r.Symlinks++
			}
		}
		var p string
		if c <= 0 {
			p = src.Entries[i].Path
		} else {
			p = dst.Entries[j].Path
		}
		if changed.entry(p) {
			r.Skipped++
			switch {
			case c < 0:
				i++
			case c > 0:
				j++
			default:
				i, j = i+1, j+1
			}
			continue
		}
		made := changed != nil && changed.made[p]
		switch {
		case c < 0 && made:
			r.Skipped++
			i++
			continue
		case c < 0:
			r.add(Difference{Path: p, What: "missing", Source: src.Entries[i].Kind.String()})
			i++
			continue
		case c > 0 && made:
			r.Skipped++
			j++
			continue
		case c > 0:
			r.add(Difference{Path: p, What: "extra", Target: dst.Entries[j].Kind.String()})
			j++
			continue
		}
		e, d := &src.Entries[i], &dst.Entries[j]
		ours, theirs := src.Hashes[i], dst.Hashes[j]
		i, j = i+1, j+1
		if e.Kind != d.Kind {
			if made {
				r.Skipped++
			} else {
				r.add(Difference{Path: p, What: "kind", Source: e.Kind.String(), Target: d.Kind.String()})
			}
			continue
		}
		attrs := changed != nil && changed.attrs[p]
		if attrs {
			r.Skipped++
		}
		if (e.UID != d.UID || e.GID != d.GID) && !attrs {
			r.add(Difference{Path: p, What: "owner", Source: fmt.Sprintf("%d:%d", e.UID, e.GID),
				Target: fmt.Sprintf("%d:%d", d.UID, d.GID)})
		}
		if e.Kind == KindSymlink {
			if e.Target != d.Target {
				r.add(Difference{Path: p, What: "target", Source: e.Target, Target: d.Target})
			}
			continue
		}
		if e.Mode != d.Mode && !attrs {
			r.add(Difference{Path: p, What: "mode", Source: fmt.Sprintf("%04o", e.Mode), Target: fmt.Sprintf("%04o", d.Mode)})
		}
		if e.Kind == KindDir {
			continue
		}
		if names, have := srcLinks[[2]uint64{e.Dev, e.Ino}], dstLinks[[2]uint64{d.Dev, d.Ino}]; !sameNames(names, have) {
			if changed.anyNamed(names) || changed.anyNamed(have) {
				r.Skipped++ // another name of the file moved since
			} else {
				r.add(Difference{Path: p, What: "links", Source: strings.Join(names, " "), Target: strings.Join(have, " ")})
			}
		}
		switch {
		case e.Size == d.Size:
		case changed != nil && len(changed.ranges[p]) > 0:
			r.Skipped++ // written or cut since: the sizes may differ
		default:
			r.add(Difference{Path: p, What: "size", Source: fmt.Sprint(e.Size), Target: fmt.Sprint(d.Size)})
		}
		r.BytesCompared += e.Size + d.Size
		r.BytesSent += int64(len(theirs)) * HashSize
		var ranges []Range
		for _, rg := range differingRanges(ours, theirs, bs, max(e.Size, d.Size)) {
			if changed.block(p, rg.Off, rg.Len) {
				r.Skipped++
				continue
			}
			ranges = append(ranges, rg)
		}
		if len(ranges) > 0 {
			r.add(Difference{Path: p, What: "content", Ranges: ranges})
		}
	}
	return r
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
