package capture

import (
	"sort"
	"strings"
	"testing"
)

// paths lists every name in the model, to compare whole trees.
func paths(t *tree) string {
	var out []string
	var walk func(n *node, prefix string)
	walk = func(n *node, prefix string) {
		for name, c := range n.children {
			p := prefix + name
			out = append(out, p)
			if c.dir {
				walk(c, p+"/")
			}
		}
	}
	walk(t.root, "")
	sort.Strings(out)
	return strings.Join(out, " ")
}

func mk(t *tree, parent *node, name string, ino uint64, dir bool) *node {
	n := &node{ino: ino, dir: dir}
	if dir {
		n.children = map[string]*node{}
	}
	t.attach(parent, name, n)
	return n
}

func TestTree(t *testing.T) {
	tests := []struct {
		name string
		op   func(t *tree, a, b *node)
		want string
	}{
		{"move directory keeps subtree", func(t *tree, a, b *node) { t.move(t.root, "a", b, "a2") },
			"b b/a2 b/a2/f b/a2/g b/h"},
		{"exchange directories keeps both subtrees", func(t *tree, a, b *node) { t.exchange(t.root, "a", t.root, "b") },
			"a a/h b b/f b/g"},
		{"rename over replaces and forgets", func(t *tree, a, b *node) { t.move(a, "f", b, "h") },
			"a a/g b b/h"},
		{"detach forgets the subtree", func(t *tree, a, b *node) { t.detach(t.root, "a") },
			"b b/h"},
		{"hard link survives one unlink", func(t *tree, a, b *node) {
			t.attach(b, "f2", a.children["f"])
			t.detach(a, "f")
		}, "a a/g b b/f2 b/h"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tr := newTree(1)
			a := mk(tr, tr.root, "a", 2, true)
			b := mk(tr, tr.root, "b", 3, true)
			mk(tr, a, "f", 4, false)
			mk(tr, a, "g", 5, false)
			mk(tr, b, "h", 6, false)
			tt.op(tr, a, b)
			if got := paths(tr); got != tt.want {
				t.Fatalf("tree %q, want %q", got, tt.want)
			}
			// Every inode the model still names must be found by number
			// and give a path that leads back to it.
			for ino, n := range tr.byIno {
				p, ok := tr.path(n)
				if !ok {
					t.Fatalf("inode %d kept without a name", ino)
				}
				if tr.lookup(p) != n {
					t.Fatalf("inode %d: path %q leads elsewhere", ino, p)
				}
			}
		})
	}
}

func TestPathCacheFollowsRenames(t *testing.T) {
	tr := newTree(1)
	a := mk(tr, tr.root, "a", 2, true)
	f := mk(tr, a, "f", 3, false)
	if p, _ := tr.path(f); p != "a/f" {
		t.Fatalf("path %q", p)
	}
	b := mk(tr, tr.root, "b", 4, true)
	tr.move(tr.root, "a", b, "c")
	if p, _ := tr.path(f); p != "b/c/f" {
		t.Fatalf("cached path not refreshed after a parent moved: %q", p)
	}
}
