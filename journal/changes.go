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

// Whole reports whether a repair sends the entry at the path whole, rather
// than ranges of it or nothing.
func (pc PathChange) Whole() bool {
	return pc.What&ChangedEntry != 0 || pc.What&ChangedContent != 0 && pc.Ranges == nil
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
		c.mark(r.Path, ChangedNames)
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

// WholePaths lists, in lexical order, the paths a repair sends whole and
// that still stand (PathChange.Whole, not gone), the root left out.
func (c *Changes) WholePaths() []string {
	var paths []string
	c.Each(func(rel string, pc PathChange) {
		if rel != "" && pc.Whole() && pc.What&ChangedGone == 0 {
			paths = append(paths, rel)
		}
	})
	return paths
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

// DecodeChanges reads what Encode wrote. Errors wrap ErrCorrupt. It walks
// the msgpack by hand: a count is checked against the bytes left before
// anything is allocated for it.
func DecodeChanges(b []byte, limit int) (*Changes, error) {
	r := bytes.NewReader(b)
	d := msgpack.NewDecoder(r)
	fail := func(format string, args ...any) (*Changes, error) {
		return nil, corruptf("journal: changes at byte %d: %s", len(b)-r.Len(), fmt.Sprintf(format, args...))
	}
	count := func(n int, err error) (int, error) {
		if n == -1 { // nil
			n = 0
		}
		if err == nil && (n < 0 || n > r.Len()) {
			err = fmt.Errorf("count %d with %d bytes left", n, r.Len())
		}
		return n, err
	}
	n, err := count(d.DecodeMapLen())
	if err != nil {
		return fail("%v", err)
	}
	c := NewChanges(limit)
	version := -1
	type entry struct {
		path string
		pc   PathChange
	}
	var entries []entry
	for range n {
		key, err := d.DecodeString()
		if err != nil {
			return fail("key: %v", err)
		}
		switch key {
		case "v":
			if version, err = d.DecodeInt(); err != nil {
				return fail("version: %v", err)
			}
		case "f":
			if c.full, err = d.DecodeBool(); err != nil {
				return fail("full: %v", err)
			}
		case "p":
			np, err := count(d.DecodeMapLen())
			if err != nil {
				return fail("paths: %v", err)
			}
			for range np {
				e, err := decodePathChange(d, count)
				if err != nil {
					return fail("%v", err)
				}
				entries = append(entries, e)
			}
		default:
			if err := d.Skip(); err != nil {
				return fail("field %q: %v", key, err)
			}
		}
	}
	if r.Len() != 0 {
		return fail("%d bytes after the record", r.Len())
	}
	if version != changesVersion {
		return fail("version %d, want %d", version, changesVersion)
	}
	if c.full {
		c.paths = map[string]*PathChange{}
		return c, nil
	}
	for _, e := range entries {
		c.mark(e.path, e.pc.What&^ChangedContent)
		if e.pc.What&ChangedContent != 0 {
			if len(e.pc.Ranges) == 0 {
				c.content(e.path, Range{0, -1})
			}
			for _, rg := range e.pc.Ranges {
				c.content(e.path, rg)
			}
		}
	}
	return c, nil
}

const knownChanges = ChangedContent | ChangedAttrs | ChangedEntry | ChangedGone | ChangedNames

func decodePathChange(d *msgpack.Decoder, count func(int, error) (int, error)) (struct {
	path string
	pc   PathChange
}, error) {
	var e struct {
		path string
		pc   PathChange
	}
	var err error
	if e.path, err = d.DecodeString(); err != nil {
		return e, fmt.Errorf("path: %w", err)
	}
	nf, err := count(d.DecodeMapLen())
	if err != nil {
		return e, fmt.Errorf("path %q: %w", e.path, err)
	}
	for range nf {
		key, err := d.DecodeString()
		if err != nil {
			return e, fmt.Errorf("path %q: key: %w", e.path, err)
		}
		switch key {
		case "w":
			w, err := d.DecodeUint64()
			if err != nil || w == 0 || Change(w)&^knownChanges != 0 || w > 0xff {
				return e, fmt.Errorf("path %q: bad change %#x (%v)", e.path, w, err)
			}
			e.pc.What = Change(w)
		case "r":
			nr, err := count(d.DecodeArrayLen())
			if err != nil || nr > maxRanges {
				return e, fmt.Errorf("path %q: %d ranges (%v)", e.path, nr, err)
			}
			for range nr {
				rg, err := decodeRange(d)
				if err != nil || rg.Off < 0 || rg.Len < -1 {
					return e, fmt.Errorf("path %q: bad range %+v (%v)", e.path, rg, err)
				}
				e.pc.Ranges = append(e.pc.Ranges, rg)
			}
		default:
			if err := d.Skip(); err != nil {
				return e, fmt.Errorf("path %q: field %q: %w", e.path, key, err)
			}
		}
	}
	if e.pc.What == 0 {
		return e, fmt.Errorf("path %q: no change", e.path)
	}
	if len(e.pc.Ranges) > 0 && e.pc.What&ChangedContent == 0 {
		return e, fmt.Errorf("path %q: ranges without a content change", e.path)
	}
	return e, nil
}

func decodeRange(d *msgpack.Decoder) (Range, error) {
	var rg Range
	n, err := d.DecodeMapLen()
	if err != nil || n > 2 {
		return rg, fmt.Errorf("range map of %d: %v", n, err)
	}
	for range n {
		key, err := d.DecodeString()
		if err != nil {
			return rg, err
		}
		v, err := d.DecodeInt64()
		if err != nil {
			return rg, err
		}
		switch key {
		case "o":
			rg.Off = v
		case "l":
			rg.Len = v
		default:
			return rg, fmt.Errorf("range key %q", key)
		}
	}
	return rg, nil
}
