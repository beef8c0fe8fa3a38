package journal_test

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"reflect"
	"strings"
	"testing"

	"github.com/vmihailenco/msgpack/v5"
	"github.com/writecap/writecap/journal"
)

// pathChange is one path of a Changes, as Each gives it.
type pathChange struct {
	Path string
	PC   journal.PathChange
}

// visit returns what c holds, in the order Each visits it.
func visit(c *journal.Changes) []pathChange {
	var out []pathChange
	c.Each(func(p string, pc journal.PathChange) {
		out = append(out, pathChange{p, pc})
	})
	return out
}

// changesOf records recs in a new Changes without a path limit.
func changesOf(recs ...journal.Record) *journal.Changes {
	c := journal.NewChanges(0)
	for i := range recs {
		c.Add(&recs[i])
	}
	return c
}

// rng is a record of a change to the bytes [off, off+n) of path, or from off
// to the end of the file when n < 0.
func rng(path string, off, n int64) journal.Record {
	if n < 0 {
		return journal.Record{Op: journal.OpTruncate, Path: path, Length: off}
	}
	return journal.Record{Op: journal.OpDirty, Path: path, Offset: off, Length: n}
}

// sameChanges fails unless got holds exactly want, in Each's order.
func sameChanges(t *testing.T, got *journal.Changes, want []pathChange) {
	t.Helper()
	g := visit(got)
	if len(g) != len(want) {
		t.Fatalf("paths:\n got %+v\nwant %+v", g, want)
	}
	for i := range want {
		if g[i].Path != want[i].Path || g[i].PC.What != want[i].PC.What ||
			!reflect.DeepEqual(g[i].PC.Ranges, want[i].PC.Ranges) {
			t.Fatalf("path %d:\n got %q %+v (ranges nil: %v)\nwant %q %+v (ranges nil: %v)",
				i, g[i].Path, g[i].PC, g[i].PC.Ranges == nil, want[i].Path, want[i].PC, want[i].PC.Ranges == nil)
		}
	}
}

const (
	content = journal.ChangedContent
	attrs   = journal.ChangedAttrs
	entry   = journal.ChangedEntry
	gone    = journal.ChangedGone
	names   = journal.ChangedNames
)

func TestChangesAddRecordsWhatEachOpChanges(t *testing.T) {
	tests := []struct {
		name string
		rec  journal.Record
		want []pathChange
	}{
		{
			name: "write: the bytes written",
			rec:  journal.Record{Op: journal.OpWrite, Path: "db/f", Offset: 4096, Data: make([]byte, 100)},
			want: []pathChange{{"db/f", journal.PathChange{What: content, Ranges: []journal.Range{{Off: 4096, Len: 100}}}}},
		},
		{
			name: "dirty: the range to read again",
			rec:  journal.Record{Op: journal.OpDirty, Path: "f", Offset: 10, Length: 20},
			want: []pathChange{{"f", journal.PathChange{What: content, Ranges: []journal.Range{{Off: 10, Len: 20}}}}},
		},
		{
			name: "truncate: from the new size to the end",
			rec:  journal.Record{Op: journal.OpTruncate, Path: "f", Length: 1000},
			want: []pathChange{{"f", journal.PathChange{What: content, Ranges: []journal.Range{{Off: 1000, Len: -1}}}}},
		},
		{
			name: "truncate to zero: the whole file",
			rec:  journal.Record{Op: journal.OpTruncate, Path: "f", Length: 0},
			want: []pathChange{{"f", journal.PathChange{What: content}}},
		},
		{
			name: "fallocate: the range and the size",
			rec:  journal.Record{Op: journal.OpFallocate, Path: "f", Mode: 3, Offset: 8192, Length: 4096},
			want: []pathChange{{"f", journal.PathChange{What: content | attrs, Ranges: []journal.Range{{Off: 8192, Len: 4096}}}}},
		},
		{
			name: "create: the entry",
			rec:  journal.Record{Op: journal.OpCreate, Path: "d/new", Mode: 0o644},
			want: []pathChange{{"d/new", journal.PathChange{What: entry}}},
		},
		{
			name: "mkdir: the entry",
			rec:  journal.Record{Op: journal.OpMkdir, Path: "d", Mode: 0o755},
			want: []pathChange{{"d", journal.PathChange{What: entry}}},
		},
		{
			name: "symlink: the link, not its target",
			rec:  journal.Record{Op: journal.OpSymlink, Path: "l", Path2: "../target"},
			want: []pathChange{{"l", journal.PathChange{What: entry}}},
		},
		{
			name: "link: the new name only",
			rec:  journal.Record{Op: journal.OpLink, Path: "old", Path2: "new"},
			want: []pathChange{{"new", journal.PathChange{What: entry}}},
		},
		{
			name: "unlink: gone",
			rec:  journal.Record{Op: journal.OpUnlink, Path: "f"},
			want: []pathChange{{"f", journal.PathChange{What: gone}}},
		},
		{
			name: "rmdir: gone",
			rec:  journal.Record{Op: journal.OpRmdir, Path: "d"},
			want: []pathChange{{"d", journal.PathChange{What: gone}}},
		},
		{
			name: "rename: the old path gone or exchanged, the new one an entry",
			rec:  journal.Record{Op: journal.OpRename, Path: "a", Path2: "b", Flags: 2},
			want: []pathChange{
				{"a", journal.PathChange{What: gone | entry}},
				{"b", journal.PathChange{What: entry}},
			},
		},
		{
			name: "setattr: attributes",
			rec:  journal.Record{Op: journal.OpSetattr, Path: "f", Flags: journal.SetMode, Mode: 0o600},
			want: []pathChange{{"f", journal.PathChange{What: attrs}}},
		},
		{
			name: "setattr of the root",
			rec:  journal.Record{Op: journal.OpSetattr, Path: "", Flags: journal.SetOwner, UID: 1},
			want: []pathChange{{"", journal.PathChange{What: attrs}}},
		},
		{
			name: "barrier of a file: nothing",
			rec:  journal.Record{Op: journal.OpBarrier, Path: "f"},
		},
		{
			name: "barrier of the tree: nothing",
			rec:  journal.Record{Op: journal.OpBarrier},
		},
		{
			name: "bookmark: nothing",
			rec:  journal.Record{Op: journal.OpBookmark, Path: "before-upgrade"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := changesOf(tt.rec)
			sameChanges(t, c, tt.want)
			if c.Len() != len(tt.want) || c.Full() {
				t.Fatalf("Len %d, Full %v; want %d, false", c.Len(), c.Full(), len(tt.want))
			}
		})
	}
}

// A prune removes from a directory what it no longer holds: the record must
// make a repair put the directory's names right, and nothing else.
func TestChangesAddPruneMarksTheDirectoryNames(t *testing.T) {
	tests := []struct {
		name string
		path string
	}{
		{name: "a directory", path: "d/sub"},
		{name: "the root", path: ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := changesOf(journal.Record{Op: journal.OpPrune, Path: tt.path, Data: []byte("keep\x00also\x00")})
			got := visit(c)
			if len(got) != 1 || got[0].Path != tt.path {
				t.Fatalf("recorded %+v, want only %q", got, tt.path)
			}
			if w := got[0].PC.What; w&(names|entry) == 0 || w&(content|gone) != 0 {
				t.Fatalf("prune of %q recorded %#x: want its names (or the whole entry) to be repaired, no content, not gone", tt.path, w)
			}
		})
	}
}

func TestChangesRangesCoalesce(t *testing.T) {
	var many, sixtyFour []journal.Record
	var sixtyFourWant []journal.Range
	for i := range int64(65) {
		many = append(many, rng("f", i*20, 10))
		if i < 64 {
			sixtyFour = append(sixtyFour, rng("f", (63-i)*20, 10)) // backwards
			sixtyFourWant = append(sixtyFourWant, journal.Range{Off: i * 20, Len: 10})
		}
	}
	tests := []struct {
		name string
		recs []journal.Record
		want []journal.Range // nil: the whole file
	}{
		{
			name: "disjoint stay apart",
			recs: []journal.Record{rng("f", 0, 10), rng("f", 20, 10)},
			want: []journal.Range{{0, 10}, {20, 10}},
		},
		{
			name: "disjoint out of order are sorted",
			recs: []journal.Record{rng("f", 300, 1), rng("f", 20, 10), rng("f", 0, 10)},
			want: []journal.Range{{0, 10}, {20, 10}, {300, 1}},
		},
		{
			name: "overlapping merge",
			recs: []journal.Record{rng("f", 0, 10), rng("f", 5, 10)},
			want: []journal.Range{{0, 15}},
		},
		{
			name: "overlapping from below merge",
			recs: []journal.Record{rng("f", 5, 10), rng("f", 0, 10)},
			want: []journal.Range{{0, 15}},
		},
		{
			name: "touching merge",
			recs: []journal.Record{rng("f", 0, 10), rng("f", 10, 10)},
			want: []journal.Range{{0, 20}},
		},
		{
			name: "touching from below merge",
			recs: []journal.Record{rng("f", 10, 10), rng("f", 0, 10)},
			want: []journal.Range{{0, 20}},
		},
		{
			name: "same offset keeps the longer",
			recs: []journal.Record{rng("f", 100, 50), rng("f", 100, 10)},
			want: []journal.Range{{100, 50}},
		},
		{
			name: "contained vanish",
			recs: []journal.Record{rng("f", 0, 100), rng("f", 10, 10)},
			want: []journal.Range{{0, 100}},
		},
		{
			name: "a bridge joins its neighbours",
			recs: []journal.Record{rng("f", 0, 10), rng("f", 20, 10), rng("f", 40, 10), rng("f", 5, 20)},
			want: []journal.Range{{0, 30}, {40, 10}},
		},
		{
			name: "writes as records",
			recs: []journal.Record{
				{Op: journal.OpWrite, Path: "f", Offset: 0, Data: make([]byte, 4096)},
				{Op: journal.OpWrite, Path: "f", Offset: 4096, Data: make([]byte, 4096)},
				{Op: journal.OpWrite, Path: "f", Offset: 16384, Data: make([]byte, 512)},
			},
			want: []journal.Range{{0, 8192}, {16384, 512}},
		},
		{
			name: "to the end absorbs later ranges",
			recs: []journal.Record{rng("f", 100, -1), rng("f", 200, 10), rng("f", 1<<40, 1)},
			want: []journal.Range{{100, -1}},
		},
		{
			name: "to the end absorbs what it reaches",
			recs: []journal.Record{rng("f", 10, 10), rng("f", 200, 10), rng("f", 15, -1)},
			want: []journal.Range{{10, -1}},
		},
		{
			name: "a range reaching a to-the-end range extends it down",
			recs: []journal.Record{rng("f", 100, -1), rng("f", 50, 60)},
			want: []journal.Range{{50, -1}},
		},
		{
			name: "to the end leaves what is before it",
			recs: []journal.Record{rng("f", 0, 10), rng("f", 100, -1)},
			want: []journal.Range{{0, 10}, {100, -1}},
		},
		{
			name: "to the end from zero is the whole file",
			recs: []journal.Record{rng("f", 5, 10), rng("f", 0, -1)},
			want: nil,
		},
		{
			name: "the whole file stays whole after later ranges",
			recs: []journal.Record{rng("f", 0, -1), rng("f", 10, 10), rng("f", 100, -1)},
			want: nil,
		},
		{
			name: "a range running past the largest offset runs to the end",
			recs: []journal.Record{rng("f", math.MaxInt64-10, 5), rng("f", math.MaxInt64-8, 100)},
			want: []journal.Range{{math.MaxInt64 - 10, -1}},
		},
		{
			name: "64 ranges are kept",
			recs: sixtyFour,
			want: sixtyFourWant,
		},
		{
			name: "65 ranges make the whole file",
			recs: many,
			want: nil,
		},
		{
			name: "the whole file stays whole past 64 more ranges",
			recs: append(append([]journal.Record{}, many...), rng("f", 1<<30, 1)),
			want: nil,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sameChanges(t, changesOf(tt.recs...), []pathChange{{"f", journal.PathChange{What: content, Ranges: tt.want}}})
		})
	}
}

func TestChangesPathLimit(t *testing.T) {
	tests := []struct {
		name     string
		limit    int
		paths    []string
		wantFull bool
		wantLen  int
	}{
		{name: "no limit", limit: 0, paths: manyPaths(5000), wantLen: 5000},
		{name: "under the limit", limit: 3, paths: []string{"a", "b"}, wantLen: 2},
		{name: "at the limit", limit: 3, paths: []string{"a", "b", "c"}, wantLen: 3},
		{name: "the same paths again stay at the limit", limit: 3, paths: []string{"a", "b", "c", "a", "c", "b"}, wantLen: 3},
		{name: "past the limit", limit: 3, paths: []string{"a", "b", "c", "d"}, wantFull: true},
		{name: "past the limit then known paths", limit: 3, paths: []string{"a", "b", "c", "d", "a"}, wantFull: true},
		{name: "far past the limit", limit: 1, paths: manyPaths(100), wantFull: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := journal.NewChanges(tt.limit)
			for i, p := range tt.paths {
				if i%2 == 0 {
					c.Mark(p, attrs)
				} else {
					c.Add(&journal.Record{Op: journal.OpWrite, Path: p, Data: []byte("x")})
				}
			}
			if c.Full() != tt.wantFull || c.Len() != tt.wantLen {
				t.Fatalf("Full %v, Len %d; want %v, %d", c.Full(), c.Len(), tt.wantFull, tt.wantLen)
			}
			if tt.wantFull {
				if got := visit(c); len(got) != 0 {
					t.Fatalf("a full record still visits %d paths", len(got))
				}
			}
		})
	}
}

func manyPaths(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("dir%d/file%d", i%7, i)
	}
	return out
}

func TestChangesMerge(t *testing.T) {
	full := journal.NewChanges(1)
	full.Mark("x", entry)
	full.Mark("y", entry)
	if !full.Full() {
		t.Fatal("a record of limit 1 with two paths is not full")
	}
	tests := []struct {
		name     string
		into     *journal.Changes
		from     *journal.Changes
		want     []pathChange
		wantFull bool
	}{
		{
			name: "ranges combine",
			into: changesOf(rng("f", 0, 10), rng("f", 100, 10)),
			from: changesOf(rng("f", 10, 10), rng("f", 50, 5), rng("f", 105, 20)),
			want: []pathChange{{"f", journal.PathChange{What: content, Ranges: []journal.Range{{0, 20}, {50, 5}, {100, 25}}}}},
		},
		{
			name: "flags combine",
			into: changesOf(journal.Record{Op: journal.OpSetattr, Path: "f"}),
			from: changesOf(rng("f", 0, 10), journal.Record{Op: journal.OpRename, Path: "f", Path2: "g"}),
			want: []pathChange{
				{"f", journal.PathChange{What: attrs | content | gone | entry, Ranges: []journal.Range{{0, 10}}}},
				{"g", journal.PathChange{What: entry}},
			},
		},
		{
			name: "paths unite",
			into: changesOf(journal.Record{Op: journal.OpMkdir, Path: "d"}),
			from: changesOf(journal.Record{Op: journal.OpUnlink, Path: "a"}),
			want: []pathChange{{"a", journal.PathChange{What: gone}}, {"d", journal.PathChange{What: entry}}},
		},
		{
			name: "a whole file merged in makes the file whole",
			into: changesOf(rng("f", 10, 10), journal.Record{Op: journal.OpSetattr, Path: "f"}),
			from: changesOf(rng("f", 0, -1)),
			want: []pathChange{{"f", journal.PathChange{What: content | attrs}}},
		},
		{
			name: "ranges merged into a whole file leave it whole",
			into: changesOf(rng("f", 0, -1)),
			from: changesOf(rng("f", 10, 10)),
			want: []pathChange{{"f", journal.PathChange{What: content}}},
		},
		{
			name: "attributes merged into a file with ranges keep its ranges",
			into: changesOf(rng("f", 10, 10)),
			from: changesOf(journal.Record{Op: journal.OpSetattr, Path: "f"}),
			want: []pathChange{{"f", journal.PathChange{What: content | attrs, Ranges: []journal.Range{{10, 10}}}}},
		},
		{
			name: "ranges past 64 in all make the whole file",
			into: changesOf(everyOther(0, 40)...),
			from: changesOf(everyOther(1000, 40)...),
			want: []pathChange{{"f", journal.PathChange{What: content}}},
		},
		{
			name:     "a full record makes the result full",
			into:     changesOf(rng("f", 0, 10)),
			from:     full,
			wantFull: true,
		},
		{
			name:     "a full record stays full",
			into:     full,
			from:     changesOf(rng("f", 0, 10)),
			wantFull: true,
		},
		{
			name: "the receiver's limit holds",
			into: func() *journal.Changes {
				c := journal.NewChanges(2)
				c.Mark("a", attrs)
				return c
			}(),
			from:     changesOf(rng("b", 0, 1), rng("c", 0, 1)),
			wantFull: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fromBefore := visit(tt.from)
			tt.into.Merge(tt.from)
			if tt.into.Full() != tt.wantFull {
				t.Fatalf("Full %v, want %v", tt.into.Full(), tt.wantFull)
			}
			sameChanges(t, tt.into, tt.want)
			if tt.wantFull && tt.into.Len() != 0 {
				t.Fatalf("full, yet Len %d", tt.into.Len())
			}
			sameChanges(t, tt.from, fromBefore)
		})
	}
}

func everyOther(first int64, n int) []journal.Record {
	var out []journal.Record
	for i := range int64(n) {
		out = append(out, rng("f", first+i*3, 1))
	}
	return out
}

// The merged record owns what it holds: changing the record merged in, or
// the result, afterwards leaves the other alone.
func TestChangesMergeDoesNotShareRanges(t *testing.T) {
	from := changesOf(rng("f", 0, 10), rng("f", 100, 10))
	into := journal.NewChanges(0)
	into.Merge(from)
	from.Add(ptr(rng("f", 10, 90)))
	into.Add(ptr(rng("f", 300, 1)))
	sameChanges(t, into, []pathChange{{"f", journal.PathChange{What: content, Ranges: []journal.Range{{0, 10}, {100, 10}, {300, 1}}}}})
	sameChanges(t, from, []pathChange{{"f", journal.PathChange{What: content, Ranges: []journal.Range{{0, 110}}}}})
}

func ptr[T any](v T) *T { return &v }

func TestChangesEachVisitsInLexicalOrder(t *testing.T) {
	tests := []struct {
		name  string
		paths []string
		want  []string
	}{
		{
			name:  "a directory before what it holds",
			paths: []string{"a/b/c", "b", "a/b", "a", ""},
			want:  []string{"", "a", "a/b", "a/b/c", "b"},
		},
		{
			name:  "bytes, not case or locale",
			paths: []string{"a.b", "a/b", "a-b", "B", "a", "é", "z"},
			want:  []string{"B", "a", "a-b", "a.b", "a/b", "z", "é"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := journal.NewChanges(0)
			for _, p := range tt.paths {
				c.Mark(p, entry)
			}
			var got []string
			c.Each(func(p string, _ journal.PathChange) { got = append(got, p) })
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("Each visited %q, want %q", got, tt.want)
			}
		})
	}
}

func TestChangesWholePaths(t *testing.T) {
	c := journal.NewChanges(0)
	c.Mark("", journal.ChangedEntry)                                               // the root: never listed
	c.Mark("replaced", journal.ChangedEntry)                                       // created or replaced
	c.Mark("unknown", journal.ChangedContent)                                      // changed where nobody knows
	c.Add(&journal.Record{Op: journal.OpWrite, Path: "ranges", Data: []byte("x")}) // ranges known
	c.Mark("gone", journal.ChangedEntry|journal.ChangedGone)                       // moved away
	c.Mark("attrs", journal.ChangedAttrs)
	want := []string{"replaced", "unknown"}
	if got := c.WholePaths(); !reflect.DeepEqual(got, want) {
		t.Fatalf("WholePaths = %q, want %q", got, want)
	}
}

// roundTrip encodes c and decodes it without a limit.
func roundTrip(t *testing.T, c *journal.Changes) *journal.Changes {
	t.Helper()
	b, err := c.Encode()
	if err != nil {
		t.Fatalf("Encode: %v", err)
	}
	back, err := journal.DecodeChanges(b, 0)
	if err != nil {
		t.Fatalf("DecodeChanges of what Encode wrote: %v", err)
	}
	return back
}

func TestChangesEncodeRoundTrip(t *testing.T) {
	var sixtyFour []journal.Record
	for i := range int64(64) {
		sixtyFour = append(sixtyFour, rng("f", i*10, 5))
	}
	full := journal.NewChanges(2)
	for _, p := range manyPaths(3) {
		full.Mark(p, entry)
	}
	var all []journal.Record
	for op := journal.OpWrite; op.Valid(); op++ {
		if op == journal.OpPrune {
			continue // of the root: see TestChangesEncodeRoundTripRoot
		}
		r := journal.Record{Op: op, Path: "p-" + op.String(), Path2: "q-" + op.String(), Offset: 4096, Length: 512, Data: []byte("data")}
		all = append(all, r)
	}
	tests := []struct {
		name string
		c    *journal.Changes
	}{
		{name: "empty", c: journal.NewChanges(0)},
		{name: "every op", c: changesOf(all...)},
		{name: "every flag", c: func() *journal.Changes {
			c := changesOf(rng("d/f", 1, 2))
			c.Mark("d/f", attrs|entry|gone|names)
			c.Mark("d", names)
			return c
		}()},
		{name: "ranges to the end", c: changesOf(rng("f", 10, 10), rng("f", 4096, -1))},
		{name: "whole file", c: changesOf(rng("f", 0, -1), journal.Record{Op: journal.OpSetattr, Path: "f"})},
		{name: "64 ranges", c: changesOf(sixtyFour...)},
		{name: "large offsets", c: changesOf(rng("f", 1<<62, 1<<40), rng("f", math.MaxInt64-1, 1))},
		{name: "names that need escaping nowhere", c: changesOf(
			journal.Record{Op: journal.OpCreate, Path: "naïve/ファイル"},
			journal.Record{Op: journal.OpCreate, Path: "with space/and\nnewline"},
			journal.Record{Op: journal.OpCreate, Path: strings.Repeat("long/", 800) + "leaf"},
		)},
		{name: "many paths", c: func() *journal.Changes {
			c := journal.NewChanges(0)
			for _, p := range manyPaths(2000) {
				c.Add(ptr(rng(p, 0, 1)))
			}
			return c
		}()},
		{name: "full", c: full},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			back := roundTrip(t, tt.c)
			if back.Full() != tt.c.Full() || back.Len() != tt.c.Len() {
				t.Fatalf("Full %v, Len %d; want %v, %d", back.Full(), back.Len(), tt.c.Full(), tt.c.Len())
			}
			sameChanges(t, back, visit(tt.c))
		})
	}
}

// The root of the tree is the path "": capture records its attributes and
// prunes it (a resend prunes the root first), so an activity record holding
// it must decode.
func TestChangesEncodeRoundTripRoot(t *testing.T) {
	tests := []struct {
		name string
		rec  journal.Record
	}{
		{name: "prune of the root", rec: journal.Record{Op: journal.OpPrune, Path: "", Data: []byte("a\x00")}},
		{name: "setattr of the root", rec: journal.Record{Op: journal.OpSetattr, Path: "", Flags: journal.SetMode, Mode: 0o755}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := changesOf(tt.rec, rng("f", 0, 1))
			sameChanges(t, roundTrip(t, c), visit(c))
		})
	}
}

func TestDecodeChangesLimit(t *testing.T) {
	b, err := changesOf(rng("a", 0, 1), rng("b", 0, 1), rng("c", 0, 1)).Encode()
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		limit    int
		wantFull bool
		wantLen  int
	}{
		{name: "no limit", limit: 0, wantLen: 3},
		{name: "at the limit", limit: 3, wantLen: 3},
		{name: "past the limit", limit: 2, wantFull: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := journal.DecodeChanges(b, tt.limit)
			if err != nil {
				t.Fatal(err)
			}
			if c.Full() != tt.wantFull || c.Len() != tt.wantLen {
				t.Fatalf("Full %v, Len %d; want %v, %d", c.Full(), c.Len(), tt.wantFull, tt.wantLen)
			}
		})
	}
}

// rawChanges encodes an activity record's changes as given, valid or not.
func rawChanges(t *testing.T, version any, paths map[string]any) []byte {
	t.Helper()
	b, err := msgpack.Marshal(map[string]any{"v": version, "f": false, "p": paths})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func pathRaw(what any, ranges ...[2]int64) map[string]any {
	m := map[string]any{"w": what}
	if ranges != nil {
		rs := []any{}
		for _, r := range ranges {
			rs = append(rs, map[string]any{"o": r[0], "l": r[1]})
		}
		m["r"] = rs
	}
	return m
}

func TestDecodeChangesRejects(t *testing.T) {
	good := rawChanges(t, 1, map[string]any{"f": pathRaw(uint8(content), [2]int64{0, 10})})
	if _, err := journal.DecodeChanges(good, 0); err != nil {
		t.Fatalf("the valid form the cases below alter: %v", err)
	}
	tests := []struct {
		name string
		b    []byte
		want string // in the error's text
	}{
		{name: "nothing", b: nil, want: "changes"},
		{name: "garbage", b: []byte{0xc1, 0xc1, 0xc1}, want: "changes"},
		{name: "text", b: []byte("not an activity record"), want: "changes"},
		{name: "an array", b: []byte{0x93, 1, 2, 3}, want: "changes"},
		{name: "cut short", b: good[:len(good)-3], want: "changes"},
		{name: "version 0", b: rawChanges(t, 0, nil), want: "version 0"},
		{name: "version 2", b: rawChanges(t, 2, map[string]any{"f": pathRaw(uint8(content))}), want: "version 2"},
		{name: "no change", b: rawChanges(t, 1, map[string]any{"f": pathRaw(0)}), want: `"f"`},
		{name: "unknown flag bit", b: rawChanges(t, 1, map[string]any{"f": pathRaw(uint8(entry | 1<<5))}), want: `"f"`},
		{name: "top flag bit", b: rawChanges(t, 1, map[string]any{"d/f": pathRaw(uint8(1 << 7))}), want: `"d/f"`},
		{name: "flag bits past a byte", b: rawChanges(t, 1, map[string]any{"f": pathRaw(uint16(0x100 | uint16(entry)))}), want: `"f"`},
		{name: "negative offset", b: rawChanges(t, 1, map[string]any{"f": pathRaw(uint8(content), [2]int64{-1, 10})}), want: `"f"`},
		{name: "length below -1", b: rawChanges(t, 1, map[string]any{"f": pathRaw(uint8(content), [2]int64{0, 10}, [2]int64{20, -2})}), want: `"f"`},
		{name: "ranges without the content flag", b: rawChanges(t, 1, map[string]any{"f": pathRaw(uint8(attrs), [2]int64{0, 10})}), want: `"f"`},
		{name: "one bad path among good ones", b: rawChanges(t, 1, map[string]any{
			"a": pathRaw(uint8(entry)), "b": pathRaw(uint8(gone)), "bad": pathRaw(uint8(1 << 6)),
		}), want: `"bad"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := journal.DecodeChanges(tt.b, 0)
			if err == nil {
				t.Fatalf("accepted, giving %+v", visit(c))
			}
			if !errors.Is(err, journal.ErrCorrupt) {
				t.Fatalf("error %q does not wrap ErrCorrupt", err)
			}
			if c != nil {
				t.Fatalf("error %q with a record", err)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %q does not name %s", err, tt.want)
			}
		})
	}
}

// A content change whose range list is present but empty is not something
// Encode writes; decoding it must not turn into a path that changed in no
// way, which drops the repair of its bytes and cannot be encoded again.
func TestDecodeChangesEmptyRangesKeepContent(t *testing.T) {
	tests := []struct {
		name string
		what journal.Change
	}{
		{name: "content only", what: content},
		{name: "content and attributes", what: content | attrs},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := rawChanges(t, 1, map[string]any{"f": map[string]any{"w": uint8(tt.what), "r": []any{}}})
			c, err := journal.DecodeChanges(b, 0)
			if err != nil {
				if !errors.Is(err, journal.ErrCorrupt) {
					t.Fatalf("error %q does not wrap ErrCorrupt", err)
				}
				return // rejecting it is fine
			}
			got := visit(c)
			if len(got) != 1 || got[0].PC.What != tt.what || got[0].PC.Ranges != nil {
				t.Fatalf("decoded %+v: want %q with %#x and the whole file, or an error", got, "f", tt.what)
			}
			roundTrip(t, c)
		})
	}
}

// claimed returns the encoding of changes whose paths map (or the ranges of
// its one path) claims n entries and holds none.
func claimed(t *testing.T, ranges bool, n uint32) []byte {
	t.Helper()
	var buf bytes.Buffer
	enc := msgpack.NewEncoder(&buf)
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(enc.EncodeMapLen(2))
	must(enc.EncodeString("v"))
	must(enc.EncodeInt(1))
	must(enc.EncodeString("p"))
	if !ranges {
		return append(buf.Bytes(), 0xdf, byte(n>>24), byte(n>>16), byte(n>>8), byte(n)) // map 32
	}
	must(enc.EncodeMapLen(1))
	must(enc.EncodeString("f"))
	must(enc.EncodeMapLen(2))
	must(enc.EncodeString("w"))
	must(enc.EncodeUint(uint64(content)))
	must(enc.EncodeString("r"))
	return append(buf.Bytes(), 0xdd, byte(n>>24), byte(n>>16), byte(n>>8), byte(n)) // array 32
}

// A few corrupt bytes must not make DecodeChanges allocate what they claim:
// the fuzzer found 20 bytes that claim 4 billion ranges and abort the process
// (fatal error: out of memory), which no caller can recover from.
func TestDecodeChangesAllocatesOnlyForWhatIsThere(t *testing.T) {
	const most = 16 << 20
	tests := []struct {
		name string
		b    []byte
	}{
		{name: "ranges claimed", b: claimed(t, true, 1<<22)},
		{name: "paths claimed", b: claimed(t, false, 1<<31)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var err error
			n := allocated(func() { _, err = journal.DecodeChanges(tt.b, 0) })
			if !errors.Is(err, journal.ErrCorrupt) {
				t.Fatalf("error %v, want one wrapping ErrCorrupt", err)
			}
			if n > most {
				t.Fatalf("decoding %d bytes allocated %d bytes", len(tt.b), n)
			}
		})
	}
}
