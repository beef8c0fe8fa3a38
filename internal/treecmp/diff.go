//go:build linux

package treecmp

// Diff is one difference between the two trees.
type Diff struct {
	Path string // slash path relative to the roots; "." is the roots themselves
	What string // e.g. "missing in b", "size 10 vs 12", "bytes differ at offset 4096"
}

func (d Diff) String() string {
	return d.Path + ": " + d.What
}
