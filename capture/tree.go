package capture

import (
	"path"
	"strings"
)

// node is one inode of the protected tree as capture believes the replica
// has it. Data is not modelled: writes are addressed by inode, so names
// matter here, and the mode and owner walks compare.
type node struct {
	ino      uint64 // 0 when not known yet (mkdir and symlink report no inode)
	dir      bool
	symlink  bool
	target   string
	links    []dirent // a directory has exactly one
	children map[string]*node
	attr     attrs
	// wholeAt is the kernel sequence number before the node was last read
	// whole (or sent whole by a walk): events below it are in what was read,
	// or were about an older file whose number the node took over.
	wholeAt uint64

	// path cache, valid while the tree's generation is unchanged
	cached    string
	cachedGen uint64
}

type dirent struct {
	parent *node
	name   string
}

// tree maps names to inodes and back, so that events carrying inode numbers
// can be turned into paths in exactly the order the master saw them.
type tree struct {
	root  *node
	byIno map[uint64]*node
	gen   uint64 // bumped by every change of names, invalidating cached paths
}

func newTree(rootIno uint64) *tree {
	r := &node{ino: rootIno, dir: true, children: map[string]*node{}}
	return &tree{root: r, byIno: map[uint64]*node{rootIno: r}, gen: 1}
}

// path returns a name of n relative to the root ("" is the root itself).
func (t *tree) path(n *node) (string, bool) {
	if n == t.root {
		return "", true
	}
	if n.cachedGen == t.gen && n.cached != "" {
		return n.cached, true
	}
	var parts []string
	start := n
	for depth := 0; n != t.root; depth++ {
		if len(n.links) == 0 || depth > 4096 {
			return "", false
		}
		l := n.links[0]
		parts = append(parts, l.name)
		n = l.parent
	}
	for i, j := 0, len(parts)-1; i < j; i, j = i+1, j-1 {
		parts[i], parts[j] = parts[j], parts[i]
	}
	start.cached, start.cachedGen = strings.Join(parts, "/"), t.gen
	return start.cached, true
}

// lookup walks rel without following symlinks.
func (t *tree) lookup(rel string) *node {
	n := t.root
	if rel == "" {
		return n
	}
	for _, c := range strings.Split(rel, "/") {
		if n == nil || !n.dir {
			return nil
		}
		n = n.children[c]
	}
	return n
}

// parentOf returns the directory node that holds rel's last component.
func (t *tree) parentOf(rel string) (*node, string) {
	dir, name := path.Split(rel)
	p := t.lookup(strings.TrimSuffix(dir, "/"))
	if p == nil || !p.dir {
		return nil, name
	}
	return p, name
}

// attach links n under parent as name, replacing whatever was there.
func (t *tree) attach(parent *node, name string, n *node) {
	t.gen++
	if old := parent.children[name]; old != nil && old != n {
		t.detach(parent, name)
	}
	parent.children[name] = n
	n.links = append(n.links, dirent{parent, name})
	if n.ino != 0 {
		t.byIno[n.ino] = n
	}
}

// detach removes the name; an inode left without names is forgotten along
// with everything beneath it.
func (t *tree) detach(parent *node, name string) *node {
	n := t.unlink(parent, name)
	if n != nil && len(n.links) == 0 {
		t.forget(n)
	}
	return n
}

// unlink removes the name but keeps the inode and its subtree, for moves.
func (t *tree) unlink(parent *node, name string) *node {
	n := parent.children[name]
	if n == nil {
		return nil
	}
	t.gen++
	delete(parent.children, name)
	for i, l := range n.links {
		if l.parent == parent && l.name == name {
			n.links = append(n.links[:i], n.links[i+1:]...)
			break
		}
	}
	return n
}

// exchange swaps two names, as RENAME_EXCHANGE does.
func (t *tree) exchange(p1 *node, n1 string, p2 *node, n2 string) {
	if (p1 == p2 && n1 == n2) || p1.children[n1] == nil || p2.children[n2] == nil {
		return
	}
	a, b := t.unlink(p1, n1), t.unlink(p2, n2)
	t.attach(p2, n2, a)
	t.attach(p1, n1, b)
}

func (t *tree) forget(n *node) {
	if n.ino != 0 && t.byIno[n.ino] == n {
		delete(t.byIno, n.ino)
	}
	for name, c := range n.children {
		delete(n.children, name)
		for i, l := range c.links {
			if l.parent == n {
				c.links = append(c.links[:i], c.links[i+1:]...)
				break
			}
		}
		if len(c.links) == 0 {
			t.forget(c)
		}
	}
}

// move renames parent/name to newParent/newName, replacing the target.
func (t *tree) move(parent *node, name string, newParent *node, newName string) {
	n := parent.children[name]
	if n == nil || newParent.children[newName] == n {
		return
	}
	t.unlink(parent, name)
	t.attach(newParent, newName, n)
}

// isAncestor reports whether a is d or above it.
func isAncestor(a, d *node) bool {
	for depth := 0; d != nil && depth < 4096; depth++ {
		if d == a {
			return true
		}
		if len(d.links) == 0 {
			return false
		}
		d = d.links[0].parent
	}
	return false
}

// setIno records a node's inode number once it becomes known.
func (t *tree) setIno(n *node, ino uint64) {
	if n.ino == ino || ino == 0 {
		return
	}
	if n.ino != 0 && t.byIno[n.ino] == n {
		delete(t.byIno, n.ino)
	}
	n.ino = ino
	t.byIno[ino] = n
}
