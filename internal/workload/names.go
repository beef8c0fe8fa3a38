//go:build linux

package workload

import (
	"fmt"
	"path"
	"slices"
	"strings"

	"golang.org/x/sys/unix"
)

// The threads all pick from the same few names so that their operations
// collide. Directories are grouped by depth: a directory is only renamed or
// exchanged to a name of the same depth, which keeps nesting at three
// levels. Base names of files (f*) and directories (letters) never overlap,
// so a file name never holds a directory and the reverse.
var dirsByDepth = [][]string{
	{"a", "b", "x"},
	{"a/c", "b/c", "a/y"},
	{"a/c/d", "b/c/z"},
}

// fileDirs hold the file names; x, a/y and b/c/z start empty.
var fileDirs = []string{"", "a", "b", "a/c", "b/c", "a/c/d"}

// leafDirs are made and removed by mkdir and rmdir only, never filled or
// renamed onto, so unlike the others they are often empty and rmdir succeeds.
var leafDirs = []string{"e", "a/e", "b/e", "a/c/e"}

const filesPerDir = 5

var files = func() []string {
	var names []string
	for _, d := range fileDirs {
		for i := range filesPerDir {
			names = append(names, join(d, "f"+string(rune('0'+i))))
		}
	}
	return names
}()

var allDirs = slices.Concat(dirsByDepth...)

func join(dir, name string) string {
	if dir == "" {
		return name
	}
	return dir + "/" + name
}

func (w *worker) abs(rel string) string {
	return w.root + "/" + rel
}

// arg notes a name the current operation works on, for error messages.
func (w *worker) arg(name string) string {
	w.args = append(w.args, name)
	return name
}

// absent reports whether rel does not exist right now.
func (w *worker) absent(rel string) bool {
	var st unix.Stat_t
	return unix.Lstat(w.abs(rel), &st) == unix.ENOENT
}

// free picks among names, preferring one that does not exist: most names
// are taken most of the time, which would starve link, symlink and the
// like. Another thread may still take it before it is used.
func (w *worker) free(names []string, except string) string {
	for try := 0; ; try++ {
		name := names[w.rng.IntN(len(names))]
		if name != except && (try >= 3 || w.absent(name)) {
			return name
		}
	}
}

// file picks a file name.
func (w *worker) file() string {
	return w.arg(files[w.rng.IntN(len(files))])
}

// freeFile picks a file name, preferably one that does not exist.
func (w *worker) freeFile() string {
	return w.arg(w.free(files, ""))
}

// filePair picks two different file names, the second preferably one that
// does not exist if free is true.
func (w *worker) filePair(free bool) (string, string) {
	from := w.file()
	if free {
		return from, w.arg(w.free(files, from))
	}
	for {
		if to := files[w.rng.IntN(len(files))]; to != from {
			return from, w.arg(to)
		}
	}
}

// dir picks a directory name other than the root.
func (w *worker) dir() string {
	level := dirsByDepth[w.rng.IntN(len(dirsByDepth))]
	return w.arg(level[w.rng.IntN(len(level))])
}

// freeDir picks a directory name, preferably one that does not exist.
func (w *worker) freeDir() string {
	return w.arg(w.free(allDirs, ""))
}

// mkdirName picks a name for mkdir or rmdir, half the time a leaf one.
func (w *worker) mkdirName() string {
	if w.rng.IntN(2) == 0 {
		return w.arg(leafDirs[w.rng.IntN(len(leafDirs))])
	}
	return w.dir()
}

// dirPair picks two different directory names of the same depth, the
// second preferably one that does not exist if free is true.
func (w *worker) dirPair(free bool) (string, string) {
	level := dirsByDepth[w.rng.IntN(len(dirsByDepth))]
	from := w.arg(level[w.rng.IntN(len(level))])
	if free {
		return from, w.arg(w.free(level, from))
	}
	i := (slices.Index(level, from) + 1 + w.rng.IntN(len(level)-1)) % len(level)
	return from, w.arg(level[i])
}

// node picks a file name most of the time, else a directory name.
func (w *worker) node() (name string, isDir bool) {
	if w.rng.IntN(4) == 0 {
		return w.dir(), true
	}
	return w.file(), false
}

// linkTarget returns a relative target for a symlink at link. Targets never
// climb with "..", so wherever renames move the link it resolves inside the
// tree. A live target names a file at or below the link's directory; a
// dangling one goes through a directory that never exists.
func (w *worker) linkTarget(link string, dangling bool) string {
	f := files[w.rng.IntN(len(files))]
	if dangling {
		return "nowhere/" + path.Base(f)
	}
	dir := path.Dir(link)
	if dir == "." {
		return f
	}
	if rest, ok := strings.CutPrefix(f, dir+"/"); ok {
		return rest
	}
	return path.Base(f)
}

// outsideName returns a fresh absolute name in the outside directory.
func (w *worker) outsideName() string {
	w.outSeq++
	return w.arg(fmt.Sprintf("%s/w%d-%d", w.outside, w.id, w.outSeq))
}
