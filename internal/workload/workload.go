//go:build linux

// Package workload drives a randomized, seeded, multi-threaded file-system
// workload through the exact system calls the capture has to see, so that
// integration tests can check that a replica ends up identical to its master.
package workload

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"

	"golang.org/x/sys/unix"
)

// maxFileSize bounds write offsets, growth and insertions so trees stay small.
const maxFileSize = 8 << 20

// Options configures Run.
type Options struct {
	Seed         int64
	Threads      int
	OpsPerThread int
	MaxWrite     int // largest single write, e.g. 4<<20
	// Outside is a directory on the same file system as root but not under
	// it, used to rename files and directories into and out of the tree.
	// Empty disables those operations.
	Outside string
}

// Stats counts the operations that succeeded, by name (see OpNames).
type Stats struct {
	Ops map[string]int
}

// OpNames lists every operation Run may issue, sorted. rename_into,
// rename_out, rename_dir_into and rename_dir_out run only when
// Options.Outside is set.
func OpNames() []string {
	names := make([]string, 0, len(ops))
	for _, o := range ops {
		names = append(names, o.name)
	}
	slices.Sort(names)
	return names
}

// Run creates the workload's directories under root and runs
// opts.Threads threads of opts.OpsPerThread operations each. Failures that
// races between threads explain (ENOENT, EEXIST, ENOTEMPTY, ...) are
// expected and not counted; any other failure stops every thread and is
// returned. Run needs root: it chowns files to other users.
func Run(ctx context.Context, root string, opts Options) (Stats, error) {
	stats := Stats{Ops: map[string]int{}}
	if opts.Threads < 1 || opts.OpsPerThread < 0 || opts.MaxWrite < 1 {
		return stats, fmt.Errorf("workload: need Threads >= 1, OpsPerThread >= 0, MaxWrite >= 1, got %+v", opts)
	}
	if unix.Geteuid() != 0 {
		return stats, errors.New("workload: must run as root to chown files")
	}
	root, err := filepath.Abs(root)
	if err != nil {
		return stats, err
	}
	if opts.Outside != "" {
		if opts.Outside, err = checkOutside(root, opts.Outside); err != nil {
			return stats, err
		}
	}
	rootfd, err := unix.Open(root, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return stats, fmt.Errorf("workload: open root %s: %w", root, err)
	}
	defer unix.Close(rootfd)
	for _, d := range allDirs {
		if err := unix.Mkdirat(rootfd, d, 0o755); err != nil && err != unix.EEXIST {
			return stats, fmt.Errorf("workload: mkdir %s: %w", d, err)
		}
	}

	table := enabledOps(opts.Outside != "")
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		firstErr error
	)
	for i := range opts.Threads {
		w := newWorker(i, root, rootfd, opts, table)
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := w.run(ctx, opts.OpsPerThread)
			mu.Lock()
			defer mu.Unlock()
			for name, n := range w.stats {
				stats.Ops[name] += n
			}
			if err != nil && firstErr == nil {
				firstErr = err
				cancel()
			}
		}()
	}
	wg.Wait()
	if firstErr == nil {
		firstErr = ctx.Err()
	}
	return stats, firstErr
}

// checkOutside returns outside made absolute after checking that renames
// between it and root can work and cannot loop.
func checkOutside(root, outside string) (string, error) {
	outside, err := filepath.Abs(outside)
	if err != nil {
		return "", err
	}
	if rel, err := filepath.Rel(root, outside); err == nil && !strings.HasPrefix(rel, "..") {
		return "", fmt.Errorf("workload: Outside %s is inside root %s", outside, root)
	}
	var sr, so unix.Stat_t
	if err := unix.Stat(root, &sr); err != nil {
		return "", fmt.Errorf("workload: stat root: %w", err)
	}
	if err := unix.Stat(outside, &so); err != nil {
		return "", fmt.Errorf("workload: stat Outside: %w", err)
	}
	if sr.Dev != so.Dev {
		return "", fmt.Errorf("workload: Outside %s is on another file system than %s: renames would fail with EXDEV", outside, root)
	}
	return outside, nil
}

// maxKept is how many descriptors a thread keeps open between operations,
// so that some writes land on files renamed or unlinked since they were opened.
const maxKept = 4

type worker struct {
	id       int
	rng      *rand.Rand
	root     string // absolute
	rootfd   int
	outside  string // absolute, or empty
	maxWrite int
	pool     []byte // random bytes that writes take their data from
	table    []op
	total    int // sum of table weights
	kept     []int
	outSeq   int      // numbers this thread's names in outside
	args     []string // what the current operation works on, for error messages
	stats    map[string]int
}

func newWorker(id int, root string, rootfd int, opts Options, table []op) *worker {
	rng := rand.New(rand.NewPCG(uint64(opts.Seed), uint64(id)))
	var key [32]byte
	for i := range 4 {
		binary.LittleEndian.PutUint64(key[i*8:], rng.Uint64())
	}
	// Each thread's data differs, so racing overlapping writes are told apart.
	pool := make([]byte, max(opts.MaxWrite, maxSmall)+maxSmall)
	rand.NewChaCha8(key).Read(pool)
	w := &worker{
		id: id, rng: rng, root: root, rootfd: rootfd, outside: opts.Outside,
		maxWrite: opts.MaxWrite, pool: pool, table: table, stats: map[string]int{},
	}
	for _, o := range table {
		w.total += o.weight
	}
	return w
}

func (w *worker) run(ctx context.Context, n int) error {
	// One OS thread per worker, like the threads of a real server process.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	defer w.closeKept()
	for i := range n {
		if ctx.Err() != nil {
			return nil
		}
		o := w.pick()
		w.args = w.args[:0]
		err := o.run(w)
		switch {
		case err == nil:
			w.stats[o.name]++
		case !expected(err):
			return fmt.Errorf("workload: thread %d op %d %s %v: %w", w.id, i, o.name, w.args, err)
		}
	}
	return nil
}

func (w *worker) pick() op {
	r := w.rng.IntN(w.total)
	for _, o := range w.table {
		if r < o.weight {
			return o
		}
		r -= o.weight
	}
	panic("unreachable")
}

// errNotDone says an operation did not happen for an expected reason: its
// precondition did not hold, or it failed in a way its own race explains.
var errNotDone = errors.New("not done")

// expected reports whether err is what racing threads sharing names cause.
func expected(err error) bool {
	return errors.Is(err, errNotDone) ||
		errors.Is(err, unix.ENOENT) || // a name another thread removed or moved
		errors.Is(err, unix.EEXIST) || // a name another thread created
		errors.Is(err, unix.ENOTEMPTY) || // a directory another thread filled
		errors.Is(err, unix.ELOOP) // symlinks pointing at each other, or O_NOFOLLOW on one
}

// tolerate turns the given errors into errNotDone.
func tolerate(err error, errnos ...unix.Errno) error {
	for _, e := range errnos {
		if errors.Is(err, e) {
			return errNotDone
		}
	}
	return err
}

func (w *worker) keep(fd int) {
	if len(w.kept) < maxKept {
		w.kept = append(w.kept, fd)
		return
	}
	i := w.rng.IntN(len(w.kept))
	unix.Close(w.kept[i])
	w.kept[i] = fd
}

func (w *worker) closeKept() {
	for _, fd := range w.kept {
		unix.Close(fd)
	}
	w.kept = nil
}
