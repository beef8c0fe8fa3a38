package capture

import (
	"path"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/writecap/writecap/journal"
)

type resolution int

const (
	inside  resolution = iota
	outside            // names something beyond the protected root
	unknown            // relative to a directory the model cannot place
)

// maxSymlinks matches the kernel's limit on nested symlinks in a lookup.
const maxSymlinks = 40

func (p *processor) abs(rel string) string {
	if rel == "" {
		return p.root
	}
	return p.root + "/" + rel
}

// resolve turns a path exactly as a process passed it into a path relative
// to the root, using the model (not the master's current tree, which may
// already be ahead of this event). follow says whether a symlink in the last
// component is followed.
func (p *processor) resolve(raw string, dirIno uint64, follow bool) (string, resolution) {
	var joined string
	if strings.HasPrefix(raw, "/") {
		joined = path.Clean(raw)
	} else {
		base := p.dirByIno(dirIno)
		if base == nil {
			return "", unknown
		}
		bp, ok := p.t.path(base)
		if !ok {
			return "", unknown
		}
		joined = path.Clean(p.abs(bp) + "/" + raw)
	}
	return p.walkSymlinks(joined, follow, 0)
}

// walkSymlinks maps an absolute, clean path to the root, substituting
// symlinks the model knows in its intermediate components.
func (p *processor) walkSymlinks(abs string, follow bool, depth int) (string, resolution) {
	var rel string
	switch {
	case abs == p.root:
		return "", inside
	case strings.HasPrefix(abs, p.root+"/"):
		rel = abs[len(p.root)+1:]
	default:
		return "", outside
	}
	parts := strings.Split(rel, "/")
	n := p.t.root
	for i, c := range parts {
		if n == nil || !n.dir {
			return rel, inside // beyond what the model knows: take it as written
		}
		child := n.children[c]
		last := i == len(parts)-1
		if child != nil && child.symlink && (!last || follow) {
			if depth >= maxSymlinks {
				return "", outside
			}
			dir := p.abs(strings.Join(parts[:i], "/"))
			t := child.target
			if !strings.HasPrefix(t, "/") {
				t = dir + "/" + t
			}
			rest := strings.Join(parts[i+1:], "/")
			next := path.Clean(t + "/" + rest)
			if rest == "" {
				next = path.Clean(t)
			}
			return p.walkSymlinks(next, follow, depth+1)
		}
		n = child
	}
	return rel, inside
}

// dirByIno finds a directory by inode, learning the inodes of directories
// created since the model last knew them.
func (p *processor) dirByIno(ino uint64) *node {
	if n := p.t.byIno[ino]; n != nil {
		if !n.dir {
			return nil // inode number reused: the model is behind
		}
		return n
	}
	for n := range p.unknownDirIno {
		if p.learnDir(n) && n.ino == ino {
			return n
		}
	}
	return nil
}

// learnDirs reads the inodes of directories whose name moved on before
// their mkdir was processed.
func (p *processor) learnDirs() {
	for n := range p.unknownDirIno {
		p.learnDir(n)
	}
}

// learnDir takes n's inode from the master once its name leads to a
// directory the model does not know. The mkdir record carried the mode the
// caller asked for, before the umask and a setgid parent had their say, so
// the master's attributes follow it.
func (p *processor) learnDir(n *node) bool {
	pth, ok := p.t.path(n)
	if !ok || n.ino != 0 {
		delete(p.unknownDirIno, n)
		return false
	}
	var st unix.Stat_t
	if unix.Lstat(p.abs(pth), &st) != nil || st.Mode&unix.S_IFMT != unix.S_IFDIR || p.t.byIno[st.Ino] != nil {
		return false
	}
	p.t.setIno(n, st.Ino)
	delete(p.unknownDirIno, n)
	p.emitAttrs(n, journal.Record{Op: journal.OpSetattr, Path: pth, Flags: journal.SetOwner | journal.SetMode, Mode: st.Mode & 07777, UID: st.Uid, GID: st.Gid})
	return true
}

// learnIno takes the inode of a newly made directory from the master, which
// the mkdir event does not carry, and reports whether the master's entry is
// that directory, with its stat.
func (p *processor) learnIno(n *node, rel string) (unix.Stat_t, bool) {
	var st unix.Stat_t
	if err := unix.Lstat(p.abs(rel), &st); err == nil && st.Mode&unix.S_IFMT == unix.S_IFDIR && p.t.byIno[st.Ino] == nil {
		p.t.setIno(n, st.Ino)
		return st, true
	}
	p.unknownDirIno[n] = true
	return st, false
}
