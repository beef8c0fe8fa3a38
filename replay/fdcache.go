//go:build linux

package replay

import "golang.org/x/sys/unix"

// fdEntry is one cached descriptor: a regular file open for writing, or a
// directory open for reading (the *at system calls and fsync need a real
// descriptor, not O_PATH).
type fdEntry struct {
	path       string // relative to the root; "" is the root itself
	fd         int
	dir        bool
	dirty      bool // changed since its last fsync
	prev, next *fdEntry
}

// fdCache is an LRU of descriptors keyed by path.
//
// Closing a dirty descriptor (eviction, invalidation) loses nothing: the
// kernel keeps the dirty pages and inodes, and the syncfs that ends every
// Sync and full barrier writes them out. Per-file fsync of cached entries is
// what keeps a full barrier cheap when only a few files changed.
//
// An operation holds at most two entries at once, each moved to the front as
// it is taken, so with max >= 2 eviction never closes a descriptor in use.
type fdCache struct {
	max    int
	byPath map[string]*fdEntry
	lru    fdEntry // sentinel: lru.next is the most recently used
}

func newFDCache(maxOpen int) *fdCache {
	c := &fdCache{max: maxOpen, byPath: make(map[string]*fdEntry, maxOpen)}
	c.lru.next, c.lru.prev = &c.lru, &c.lru
	return c
}

// get returns the entry for path, marking it most recently used, or nil.
func (c *fdCache) get(path string) *fdEntry {
	e := c.byPath[path]
	if e != nil && c.lru.next != e {
		c.unlink(e)
		c.pushFront(e)
	}
	return e
}

// add caches fd under path, replacing any entry for path and evicting the
// least recently used entry when full.
func (c *fdCache) add(path string, fd int, dir bool) *fdEntry {
	if old := c.byPath[path]; old != nil {
		c.remove(old)
	}
	if len(c.byPath) >= c.max {
		c.remove(c.lru.prev)
	}
	e := &fdEntry{path: path, fd: fd, dir: dir}
	c.byPath[path] = e
	c.pushFront(e)
	return e
}

// drop closes the entries for path and everything beneath it: after an
// unlink, rmdir, rename, exchange or replacement the path names another
// object, or nothing.
func (c *fdCache) drop(path string) {
	for p, e := range c.byPath {
		if p == path || isAncestor(path, p) {
			c.remove(e)
		}
	}
}

// each calls f on every entry, most recent first, stopping at an error.
func (c *fdCache) each(f func(*fdEntry) error) error {
	for e := c.lru.next; e != &c.lru; e = e.next {
		if err := f(e); err != nil {
			return err
		}
	}
	return nil
}

// closeAll closes every entry.
func (c *fdCache) closeAll() {
	for _, e := range c.byPath {
		c.remove(e)
	}
}

func (c *fdCache) remove(e *fdEntry) {
	c.unlink(e)
	delete(c.byPath, e.path)
	// close(2) on Linux releases the descriptor even when it reports an
	// error; writeback errors surface at the next fsync or syncfs.
	unix.Close(e.fd)
}

func (c *fdCache) unlink(e *fdEntry) {
	e.prev.next, e.next.prev = e.next, e.prev
}

func (c *fdCache) pushFront(e *fdEntry) {
	e.prev, e.next = &c.lru, c.lru.next
	c.lru.next.prev = e
	c.lru.next = e
}
