package journal

import (
	"bytes"
	"fmt"
	"maps"
	"math"
	"slices"
	"sort"

	"github.com/vmihailenco/msgpack/v5"
)

// Change says how an entry of the tree changed. Stored in activity records:
// never renumber.
type Change uint8

const (
	ChangedContent Change = 1 << iota // bytes in the listed ranges
	ChangedAttrs                      // mode, owner or times
	ChangedEntry                      // created, replaced or moved to the path: send it whole
	ChangedGone                       // removed or moved away from the path
	ChangedNames                      // a directory whose entries changed: remove what it no longer holds
)

// Range is a byte range of a file; Len < 0 runs to the end of the file.
type Range struct {
	Off int64 `msgpack:"o"`
	Len int64 `msgpack:"l"`
}

func (r Range) end() int64 {
	if r.Len < 0 || r.Off+r.Len < r.Off {
		return math.MaxInt64
	}
	return r.Off + r.Len
}

// maxRanges per file: past it the whole file counts as changed.
const maxRanges = 64

// Changes is a compact record of what a run of records changed: paths and
// how, and the byte ranges of writes, without their bytes. A master keeps it
// instead of records it cannot spool, and persists it so that a restart
// repairs exactly what may not have reached the replicas.
type Changes struct {
	paths map[string]*PathChange
	limit int
	full  bool
}

// PathChange is what changed at one path.
type PathChange struct {
	What   Change  `msgpack:"w"`
	Ranges []Range `msgpack:"r,omitempty"` // with ChangedContent; nil: the whole file
}

// NewChanges returns an empty record of at most limit paths (0: no limit).
// Past the limit it only remembers that everything may have changed.
func NewChanges(limit int) *Changes {
	return &Changes{paths: map[string]*PathChange{}, limit: limit}
}

// Full reports whether the record passed its limit: everything may differ.
func (c *Changes) Full() bool { return c.full }

// Len is the number of paths recorded.
func (c *Changes) Len() int { return len(c.paths) }

// Add records what r changes.
func (c *Changes) Add(r *Record) {
	switch r.Op {
	case OpWrite:
		c.content(r.Path, Range{r.Offset, int64(len(r.Data))})
	case OpDirty:
		c.content(r.Path, Range{r.Offset, r.Length})
	case OpTruncate:
		// Read back from the new size on, the repair sets the size: it
		// cuts what is past it, or extends with the zeros the master has.
		c.content(r.Path, Range{r.Length, -1})
	case OpFallocate:
		c.content(r.Path, Range{r.Offset, r.Length})
		c.mark(r.Path, ChangedAttrs) // the size may change
	case OpCreate, OpMkdir, OpSymlink:
		c.mark(r.Path, ChangedEntry)
	case OpLink:
		c.mark(r.Path2, ChangedEntry)
	case OpRmdir, OpUnlink:
		c.mark(r.Path, ChangedGone)
	case OpRename:
		c.mark(r.Path, ChangedGone|ChangedEntry) // an exchange puts something there
		c.mark(r.Path2, ChangedEntry)
	case OpSetattr:
		c.mark(r.Path, ChangedAttrs)
	case OpPrune:
		c.mark(r.Path, ChangedEntry)
	}
}

// Mark records a change found other than through a record.
func (c *Changes) Mark(path string, what Change) { c.mark(path, what) }

func (c *Changes) mark(path string, what Change) *PathChange {
	if c.full {
		return nil
	}
	pc := c.paths[path]
	if pc == nil {
		if c.limit > 0 && len(c.paths) >= c.limit {
			c.full = true
			c.paths = map[string]*PathChange{}
			return nil
		}
		pc = &PathChange{}
		c.paths[path] = pc
	}
	pc.What |= what
	return pc
}

func (c *Changes) content(path string, r Range) {
	had := c.paths[path]
	wasWhole := had != nil && had.What&ChangedContent != 0 && had.Ranges == nil
	pc := c.mark(path, ChangedContent)
	if pc == nil || wasWhole {
		return
	}
	if r.Len < 0 && r.Off == 0 {
		pc.Ranges = nil
		return
	}
	pc.Ranges = addRange(pc.Ranges, r)
	if len(pc.Ranges) > maxRanges {
		pc.Ranges = nil
	}
}

// addRange inserts r into sorted, disjoint ranges, merging what touches it.
func addRange(rs []Range, r Range) []Range {
	i := sort.Search(len(rs), func(i int) bool { return rs[i].Off > r.Off })
	rs = slices.Insert(rs, i, r)
	out := rs[:1]
	for _, x := range rs[1:] {
		last := &out[len(out)-1]
		if x.Off > last.end() {
			out = append(out, x)
			continue
		}
		if e := x.end(); e > last.end() {
			if e == math.MaxInt64 {
				last.Len = -1
			} else {
				last.Len = e - last.Off
			}
		}
	}
	return out
}

// Merge adds everything o records.
func (c *Changes) Merge(o *Changes) {
	if o.full {
		c.full, c.paths = true, map[string]*PathChange{}
		return
	}
	for _, p := range slices.Sorted(maps.Keys(o.paths)) {
		pc := o.paths[p]
		if pc.What&ChangedContent != 0 {
			if pc.Ranges == nil {
				c.content(p, Range{0, -1})
			}
			for _, r := range pc.Ranges {
				c.content(p, r)
			}
		}
		c.mark(p, pc.What&^ChangedContent)
	}
}

// Each calls fn for every path in lexical order, so a directory comes
// before what it holds.
func (c *Changes) Each(fn func(path string, pc PathChange)) {
	for _, p := range slices.Sorted(maps.Keys(c.paths)) {
		fn(p, *c.paths[p])
	}
}

// changesVersion is the version of the encoded form. On-disk format.
const changesVersion = 1

type encodedChanges struct {
	Version int                   `msgpack:"v"`
	Full    bool                  `msgpack:"f"`
	Paths   map[string]PathChange `msgpack:"p"`
}

// Encode returns c as bytes for an activity record (msgpack).
func (c *Changes) Encode() ([]byte, error) {
	e := encodedChanges{Version: changesVersion, Full: c.full, Paths: make(map[string]PathChange, len(c.paths))}
	for p, pc := range c.paths {
		e.Paths[p] = *pc
	}
	var buf bytes.Buffer
	enc := msgpack.NewEncoder(&buf)
	enc.SetSortMapKeys(true)
	if err := enc.Encode(&e); err != nil {
		return nil, fmt.Errorf("journal: encode changes: %w", err)
	}
	return buf.Bytes(), nil
}

// DecodeChanges reads what Encode wrote. Errors wrap ErrCorrupt.
func DecodeChanges(b []byte, limit int) (*Changes, error) {
	var e encodedChanges
	dec := msgpack.NewDecoder(bytes.NewReader(b))
	if err := dec.Decode(&e); err != nil {
		return nil, corruptf("journal: changes: %v", err)
	}
	if e.Version != changesVersion {
		return nil, corruptf("journal: changes: version %d, want %d", e.Version, changesVersion)
	}
	c := NewChanges(limit)
	c.full = e.Full
	if c.full {
		return c, nil
	}
	for p, pc := range e.Paths {
		if p == "" || pc.What == 0 || pc.What&^(ChangedContent|ChangedAttrs|ChangedEntry|ChangedGone|ChangedNames) != 0 {
			return nil, corruptf("journal: changes: path %q: bad change %#x", p, pc.What)
		}
		for _, r := range pc.Ranges {
			if r.Off < 0 || r.Len < -1 {
				return nil, corruptf("journal: changes: path %q: bad range %+v", p, r)
			}
		}
		if pc.Ranges != nil && pc.What&ChangedContent == 0 {
			return nil, corruptf("journal: changes: path %q: ranges without a content change", p)
		}
		c.mark(p, pc.What&^ChangedContent)
		if pc.What&ChangedContent != 0 {
			if pc.Ranges == nil {
				c.content(p, Range{0, -1})
			}
			for _, r := range pc.Ranges {
				c.content(p, r)
			}
		}
	}
	return c, nil
}
