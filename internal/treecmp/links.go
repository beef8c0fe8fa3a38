//go:build linux

package treecmp

import (
	"maps"
	"slices"
	"strings"
)

// hardLinks reports paths, present in both trees, whose sets of same-inode
// paths differ: a replica must link exactly what the master linked.
func (c *comparer) hardLinks() {
	var paths []string
	for g := range maps.Values(c.a.groups) {
		paths = append(paths, g...)
	}
	for g := range maps.Values(c.b.groups) {
		paths = append(paths, g...)
	}
	slices.Sort(paths)
	// One difference per group: each other member would repeat it.
	seenA, seenB := map[string]bool{}, map[string]bool{}
	for _, p := range slices.Compact(paths) {
		ga, gb := c.a.group(p), c.b.group(p)
		if ga == nil || gb == nil || slices.Equal(ga, gb) {
			continue
		}
		ka, kb := strings.Join(ga, ","), strings.Join(gb, ",")
		if seenA[ka] || seenB[kb] {
			continue
		}
		seenA[ka], seenB[kb] = true, true
		c.add(p, "hard links: {%s} vs {%s}", ka, kb)
	}
}

// group returns the sorted paths sharing p's inode in t, or nil when p is
// not a non-directory entry of t.
func (t *tree) group(p string) []string {
	id, ok := t.inodes[p]
	if !ok {
		return nil
	}
	g, ok := t.groups[id]
	if !ok {
		return []string{p}
	}
	return slices.Sorted(slices.Values(g))
}
