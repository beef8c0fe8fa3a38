package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/writecap/writecap/internal/treecmp"
)

// ring is the least of io_uring a test needs: one request at a time,
// submitted and waited for with io_uring_enter. Its requests are carried
// out by the kernel, not by a syscall of the writer's own.
type ring struct {
	fd              int
	sq, cq, sqes    []byte
	sqHead, sqTail  *uint32
	sqMask, sqArray uint32
	cqHead, cqTail  *uint32
	cqMask, cqes    uint32
	keep            [][]byte // buffers the kernel reads until completion
}

// sqe is struct io_uring_sqe.
type sqe struct {
	opcode   uint8
	flags    uint8
	ioprio   uint16
	fd       int32
	off      uint64 // also addr2
	addr     uint64
	len      uint32
	opFlags  uint32
	userData uint64
	bufIndex uint16
	pers     uint16
	fileIdx  int32
	addr3    uint64
	pad      uint64
}

const (
	opFsync     = 3
	opFallocate = 17
	opOpenat    = 18
	opClose     = 19
	opWrite     = 23
	opWritev    = 2
	opRenameat  = 35
	opUnlinkat  = 36
	opMkdirat   = 37
	opSymlinkat = 38
	opLinkat    = 39
	opFtruncate = 55
)

func newRing(t *testing.T) *ring {
	t.Helper()
	var p [30]uint32 // struct io_uring_params, 120 bytes
	p[0] = 8
	fd, _, errno := unix.Syscall(unix.SYS_IO_URING_SETUP, 8, uintptr(unsafe.Pointer(&p)), 0)
	if errno != 0 {
		t.Fatalf("io_uring_setup: %v", errno)
	}
	r := &ring{fd: int(fd)}
	t.Cleanup(func() { unix.Close(r.fd) })
	// sq_off begins at p[10], cq_off at p[20].
	sqSize := p[10+6] + p[0]*4
	cqSize := p[20+5] + p[1]*16
	mapRing := func(off int64, size uint32) []byte {
		b, err := unix.Mmap(r.fd, off, int(size), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE)
		if err != nil {
			t.Fatalf("mmap io_uring at %#x: %v", off, err)
		}
		t.Cleanup(func() { unix.Munmap(b) })
		return b
	}
	r.sq = mapRing(0, sqSize)
	r.cq = mapRing(0x8000000, cqSize)
	r.sqes = mapRing(0x10000000, p[0]*64)
	u32 := func(b []byte, off uint32) *uint32 { return (*uint32)(unsafe.Pointer(&b[off])) }
	r.sqHead, r.sqTail, r.sqMask, r.sqArray = u32(r.sq, p[10]), u32(r.sq, p[11]), *u32(r.sq, p[12]), p[16]
	r.cqHead, r.cqTail, r.cqMask, r.cqes = u32(r.cq, p[20]), u32(r.cq, p[21]), *u32(r.cq, p[22]), p[25]
	return r
}

// do submits one request, waits for it and returns its result.
func (r *ring) do(t *testing.T, e sqe) int32 {
	t.Helper()
	tail := atomic.LoadUint32(r.sqTail)
	idx := tail & r.sqMask
	*(*sqe)(unsafe.Pointer(&r.sqes[idx*64])) = e
	*(*uint32)(unsafe.Pointer(&r.sq[r.sqArray+idx*4])) = idx
	atomic.StoreUint32(r.sqTail, tail+1)
	const getEvents = 1
	toSubmit := uintptr(1)
	head := atomic.LoadUint32(r.cqHead)
	for head == atomic.LoadUint32(r.cqTail) {
		// The wait can end early (a signal: Go preempts with SIGURG).
		_, _, errno := unix.Syscall6(unix.SYS_IO_URING_ENTER, uintptr(r.fd), toSubmit, 1, getEvents, 0, 0)
		if errno != 0 && errno != unix.EINTR {
			t.Fatalf("io_uring_enter: %v", errno)
		}
		if errno == 0 {
			toSubmit = 0
		}
	}
	res := *(*int32)(unsafe.Pointer(&r.cq[r.cqes+(head&r.cqMask)*16+8]))
	atomic.StoreUint32(r.cqHead, head+1)
	runtime.KeepAlive(r.keep)
	r.keep = r.keep[:0]
	return res
}

// flood submits the requests in rounds of a full submission queue without
// reaping any, so that their completions may overflow the completion queue
// (twice the submission queue), then reaps want completions and returns
// their results by userData (below want).
func (r *ring) flood(t *testing.T, es []sqe, want int) []int32 {
	t.Helper()
	sqEntries := int(r.sqMask + 1)
	for start := 0; start < len(es); start += sqEntries {
		batch := es[start:min(start+sqEntries, len(es))]
		tail := atomic.LoadUint32(r.sqTail)
		for i, e := range batch {
			idx := (tail + uint32(i)) & r.sqMask
			*(*sqe)(unsafe.Pointer(&r.sqes[idx*64])) = e
			*(*uint32)(unsafe.Pointer(&r.sq[r.sqArray+idx*4])) = idx
		}
		atomic.StoreUint32(r.sqTail, tail+uint32(len(batch)))
		if _, _, errno := unix.Syscall6(unix.SYS_IO_URING_ENTER, uintptr(r.fd), uintptr(len(batch)), 0, 0, 0, 0); errno != 0 {
			t.Fatalf("io_uring_enter: %v", errno)
		}
	}
	res := make([]int32, want)
	for got := 0; got < want; {
		head := atomic.LoadUint32(r.cqHead)
		if head == atomic.LoadUint32(r.cqTail) {
			// The kernel moves what overflowed into the queue as it empties.
			const getEvents = 1
			if _, _, errno := unix.Syscall6(unix.SYS_IO_URING_ENTER, uintptr(r.fd), 0, 1, getEvents, 0, 0); errno != 0 && errno != unix.EINTR {
				t.Fatalf("io_uring_enter: %v", errno)
			}
			continue
		}
		cqe := r.cq[r.cqes+(head&r.cqMask)*16:]
		res[*(*uint64)(unsafe.Pointer(&cqe[0]))] = *(*int32)(unsafe.Pointer(&cqe[8]))
		atomic.StoreUint32(r.cqHead, head+1)
		got++
	}
	runtime.KeepAlive(r.keep)
	r.keep = r.keep[:0]
	return res
}

func (r *ring) ptr(b []byte) uint64 {
	r.keep = append(r.keep, b)
	return uint64(uintptr(unsafe.Pointer(&b[0])))
}

func (r *ring) str(s string) uint64 { return r.ptr(append([]byte(s), 0)) }

// must runs a request that has to succeed and returns its result.
func (r *ring) must(t *testing.T, what string, e sqe) int32 {
	t.Helper()
	res := r.do(t, e)
	if res < 0 {
		t.Fatalf("io_uring %s: %v", what, unix.Errno(-res))
	}
	return res
}

// TestMirrorIOUring changes a protected tree only through io_uring, whose
// requests the kernel carries out without a syscall of the writer's, and
// requires the target to match while the mirror still runs (its stop
// re-asserts names, which would hide a change of names that capture missed).
func TestMirrorIOUring(t *testing.T) {
	requireBPF(t)
	// db is overwritten in place below, its size unchanged; cut is cut to
	// nothing by an O_TRUNC open, and written no more.
	old := make([]byte, 256<<10)
	for i := range old {
		old[i] = byte(i * 7)
	}
	src, dst, m := mirrored(t, map[string][]byte{"db": old, "cut": old[:10000]})
	dir, err := unix.Open(src, unix.O_DIRECTORY|unix.O_RDONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(dir)
	r := newRing(t)
	data := func(n int, seed byte) []byte {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(i) ^ seed
		}
		return b
	}

	db := r.must(t, "open db", sqe{opcode: opOpenat, fd: int32(dir), addr: r.str("db"), opFlags: unix.O_WRONLY})
	b := data(4096, 1)
	r.must(t, "write db", sqe{opcode: opWrite, fd: db, addr: r.ptr(b), len: uint32(len(b)), off: 64 << 10})
	v1, v2 := data(1000, 2), data(3000, 3)
	iov := []unix.Iovec{{Base: &v1[0]}, {Base: &v2[0]}}
	iov[0].SetLen(len(v1))
	iov[1].SetLen(len(v2))
	r.keep = append(r.keep, v1, v2)
	r.must(t, "writev db", sqe{opcode: opWritev, fd: db, addr: uint64(uintptr(unsafe.Pointer(&iov[0]))), len: 2, off: 200 << 10})
	r.keep = append(r.keep, unsafe.Slice((*byte)(unsafe.Pointer(&iov[0])), 2*int(unsafe.Sizeof(iov[0]))))
	r.must(t, "fsync db", sqe{opcode: opFsync, fd: db})
	r.must(t, "punch db", sqe{opcode: opFallocate, fd: db, off: 8 << 10, addr: 16 << 10, len: unix.FALLOC_FL_PUNCH_HOLE | unix.FALLOC_FL_KEEP_SIZE})
	r.must(t, "close db", sqe{opcode: opClose, fd: db})

	c := r.must(t, "open cut with O_TRUNC", sqe{opcode: opOpenat, fd: int32(dir), addr: r.str("cut"), opFlags: unix.O_WRONLY | unix.O_TRUNC})
	r.must(t, "close cut", sqe{opcode: opClose, fd: c})

	r.must(t, "mkdir u", sqe{opcode: opMkdirat, fd: int32(dir), addr: r.str("u"), len: 0o750})
	a := r.must(t, "create u/a", sqe{opcode: opOpenat, fd: int32(dir), addr: r.str("u/a"), len: 0o640, opFlags: unix.O_CREAT | unix.O_WRONLY | unix.O_TRUNC})
	b = data(70000, 4)
	r.must(t, "write u/a", sqe{opcode: opWrite, fd: a, addr: r.ptr(b), len: uint32(len(b)), off: ^uint64(0)})
	r.must(t, "truncate u/a", sqe{opcode: opFtruncate, fd: a, off: 50000})
	r.must(t, "close u/a", sqe{opcode: opClose, fd: a})
	r.must(t, "rename u/a", sqe{opcode: opRenameat, fd: int32(dir), addr: r.str("u/a"), len: uint32(dir), off: r.str("u/b")})
	r.must(t, "link u/b", sqe{opcode: opLinkat, fd: int32(dir), addr: r.str("u/b"), len: uint32(dir), off: r.str("u/c")})
	r.must(t, "symlink u/d", sqe{opcode: opSymlinkat, fd: int32(dir), addr: r.str("b"), off: r.str("u/d")})
	r.must(t, "unlink u/c", sqe{opcode: opUnlinkat, fd: int32(dir), addr: r.str("u/c")})
	// An absolute path, judged by the roots' paths rather than a base.
	e := r.must(t, "create u/e", sqe{opcode: opOpenat, fd: unix.AT_FDCWD, addr: r.str(filepath.Join(src, "u", "e")), len: 0o600, opFlags: unix.O_CREAT | unix.O_WRONLY})
	b = data(5000, 5)
	r.must(t, "write u/e", sqe{opcode: opWrite, fd: e, addr: r.ptr(b), len: uint32(len(b))})
	r.must(t, "close u/e", sqe{opcode: opClose, fd: e})

	sameWhileRunning(t, m, src, dst)
}

// TestMirrorIOUringNames: changes of names alone through io_uring are put
// right by a walk of the names, not one that sends every file again.
func TestMirrorIOUringNames(t *testing.T) {
	requireBPF(t)
	src, dst, m := mirrored(t, map[string][]byte{"d/a": make([]byte, 10000)})
	dir, err := unix.Open(src, unix.O_DIRECTORY|unix.O_RDONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(dir)
	r := newRing(t)
	r.must(t, "mkdir e", sqe{opcode: opMkdirat, fd: int32(dir), addr: r.str("e"), len: 0o750})
	r.must(t, "rename d/a", sqe{opcode: opRenameat, fd: int32(dir), addr: r.str("d/a"), len: uint32(dir), off: r.str("e/b")})
	r.must(t, "link e/b", sqe{opcode: opLinkat, fd: int32(dir), addr: r.str("e/b"), len: uint32(dir), off: r.str("c")})
	r.must(t, "rmdir d", sqe{opcode: opUnlinkat, fd: int32(dir), addr: r.str("d"), opFlags: unix.AT_REMOVEDIR})
	sameWhileRunning(t, m, src, dst)
	if log := m.stderr.String(); !strings.Contains(log, `reason="names changed through io_uring" content=false`) {
		t.Errorf("no walk of names alone after io_uring changed names:\n%s", lastLines(log, 20))
	}
}

// TestMirrorIOUringOverflow: io_uring writes whose completions overflow the
// completion queue (the kernel holds them until the program reaps) are
// captured like any others.
func TestMirrorIOUringOverflow(t *testing.T) {
	requireBPF(t)
	const writes = 48
	src, dst, m := mirrored(t, map[string][]byte{"db": make([]byte, writes*8192)})
	f, err := os.OpenFile(filepath.Join(src, "db"), os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r := newRing(t)
	var es []sqe
	for i := range writes {
		b := make([]byte, 4096)
		for k := range b {
			b[k] = byte(i + k)
		}
		es = append(es, sqe{opcode: opWrite, fd: int32(f.Fd()), addr: r.ptr(b), len: 4096, off: uint64(i) * 8192, userData: uint64(i)})
	}
	for i, res := range r.flood(t, es, len(es)) {
		if res != 4096 {
			t.Fatalf("write %d: result %d", i, res)
		}
	}
	sameWhileRunning(t, m, src, dst)
}

// TestMirrorIOUringSkipSuccess: io_uring writes whose success posts no
// completion (IOSQE_CQE_SKIP_SUCCESS) are on the replica once a barrier
// after them completed.
func TestMirrorIOUringSkipSuccess(t *testing.T) {
	requireBPF(t)
	src, dst, m := mirrored(t, map[string][]byte{"db": make([]byte, 64<<10)})
	f, err := os.OpenFile(filepath.Join(src, "db"), os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r := newRing(t)
	const (
		link        = 1 << 2 // IOSQE_IO_LINK: the next request waits for this one
		skipSuccess = 1 << 6 // IOSQE_CQE_SKIP_SUCCESS
	)
	var es []sqe
	for i := range 4 {
		b := make([]byte, 4096)
		for k := range b {
			b[k] = byte(i*3 + k + 1)
		}
		es = append(es, sqe{opcode: opWrite, flags: link | skipSuccess, fd: int32(f.Fd()), addr: r.ptr(b), len: 4096, off: uint64(i) * 16384, userData: 1})
	}
	es = append(es, sqe{opcode: opFsync, fd: int32(f.Fd())})
	if res := r.flood(t, es, 1)[0]; res != 0 {
		t.Fatalf("fsync after the writes: %v", unix.Errno(-res))
	}
	sameWhileRunning(t, m, src, dst)
}

// mirrored starts a mirror of a source tree holding files (by path), and
// returns once its initial copy is on the target, so that what a test
// changes next reaches the target through capture alone.
func mirrored(t *testing.T, files map[string][]byte) (src, dst string, m *agent) {
	t.Helper()
	base := t.TempDir()
	src, dst = filepath.Join(base, "src"), filepath.Join(base, "dst")
	for name, b := range files {
		p := filepath.Join(src, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	m = startMirror(t, src, dst)
	waitSame(t, src, dst)
	return src, dst, m
}

// sameWhileRunning requires the target to match the source while the mirror
// runs (its stop re-asserts names, which would hide a change capture
// missed), and after it stopped.
func sameWhileRunning(t *testing.T, m *agent, src, dst string) {
	t.Helper()
	waitSame(t, src, dst)
	m.stop(t)
	treecmp.AssertEqual(t, src, dst, treecmp.Options{Owners: true})
}

// waitSame waits for the running mirror to make dst equal src. Capture
// applies continuously; a change it missed never shows up, so the wait
// ends at a deadline with the differences named.
func waitSame(t *testing.T, src, dst string) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		diffs, err := treecmp.Compare(src, dst, treecmp.Options{})
		if err != nil {
			t.Fatal(err)
		}
		if len(diffs) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the target still differs from the source while the mirror runs: %v", fmt.Sprint(diffs))
		}
		time.Sleep(20 * time.Millisecond)
	}
}
