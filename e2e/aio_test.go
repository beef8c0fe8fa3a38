package e2e

import (
	"path/filepath"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
)

// iocb is struct iocb of linux/aio_abi.h.
type iocb struct {
	data     uint64
	key      uint32
	rwFlags  uint32
	opcode   uint16
	reqprio  int16
	fildes   uint32
	buf      uint64
	nbytes   uint64
	offset   int64
	reserved uint64
	flags    uint32
	resfd    uint32
}

// ioEvent is struct io_event.
type ioEvent struct {
	data, obj uint64
	res, res2 int64
}

const (
	iocbPwrite  = 1
	iocbFdsync  = 3
	iocbPwritev = 8
)

// aio submits cbs in one io_submit and reaps them with io_getevents, as
// libaio does; it fails the test on any error, the requests' own included.
func aio(t *testing.T, cbs []*iocb) {
	t.Helper()
	var ctx uint64
	if _, _, e := unix.Syscall(unix.SYS_IO_SETUP, 64, uintptr(unsafe.Pointer(&ctx)), 0); e != 0 {
		t.Fatalf("io_setup: %v", e)
	}
	defer unix.Syscall(unix.SYS_IO_DESTROY, uintptr(ctx), 0, 0)
	ptrs := make([]uintptr, len(cbs))
	for i, cb := range cbs {
		ptrs[i] = uintptr(unsafe.Pointer(cb))
	}
	n, _, e := unix.Syscall(unix.SYS_IO_SUBMIT, uintptr(ctx), uintptr(len(ptrs)), uintptr(unsafe.Pointer(&ptrs[0])))
	if e != 0 || int(n) != len(cbs) {
		t.Fatalf("io_submit: %d of %d: %v", n, len(cbs), e)
	}
	evs := make([]ioEvent, len(cbs))
	for got := 0; got < len(cbs); {
		n, _, e := unix.Syscall6(unix.SYS_IO_GETEVENTS, uintptr(ctx), 1, uintptr(len(cbs)-got), uintptr(unsafe.Pointer(&evs[got])), 0, 0)
		if e == unix.EINTR {
			continue
		}
		if e != 0 {
			t.Fatalf("io_getevents: %v", e)
		}
		got += int(n)
	}
	for _, ev := range evs {
		if ev.res < 0 {
			t.Fatalf("AIO request %#x: %v", ev.obj, unix.Errno(-ev.res))
		}
	}
}

// TestMirrorAIO: writes and a barrier through Linux AIO (io_submit), the
// way databases such as MySQL's InnoDB write, both buffered (done within
// io_submit) and O_DIRECT (done later, reaped by io_getevents), reach the
// target while the mirror runs. The files keep their sizes, so only
// capture of the writes themselves can carry them.
func TestMirrorAIO(t *testing.T) {
	requireBPF(t)
	old := make([]byte, 1<<20)
	for i := range old {
		old[i] = byte(i * 7)
	}
	src, dst, m := mirrored(t, map[string][]byte{"buffered": old, "direct": old})

	// O_DIRECT needs buffers aligned to the logical block: a mapping is.
	mem, err := unix.Mmap(-1, 0, 3<<12, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Munmap(mem)
	for i := range mem {
		mem[i] = byte(i) ^ 0x5a
	}
	addr := func(b []byte) uint64 { return uint64(uintptr(unsafe.Pointer(&b[0]))) }
	buffered, err := unix.Open(filepath.Join(src, "buffered"), unix.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(buffered)
	direct, err := unix.Open(filepath.Join(src, "direct"), unix.O_WRONLY|unix.O_DIRECT, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(direct)
	iov := []unix.Iovec{{Base: &mem[100]}, {Base: &mem[5000]}}
	iov[0].SetLen(300)
	iov[1].SetLen(2000)
	aio(t, []*iocb{
		{opcode: iocbPwrite, fildes: uint32(buffered), buf: addr(mem[10:]), nbytes: 777, offset: 8193},
		{opcode: iocbPwritev, fildes: uint32(buffered), buf: uint64(uintptr(unsafe.Pointer(&iov[0]))), nbytes: 2, offset: 300 << 10},
		{opcode: iocbPwrite, fildes: uint32(direct), buf: addr(mem), nbytes: 2 << 12, offset: 64 << 10},
		{opcode: iocbFdsync, fildes: uint32(direct)},
	})
	aio(t, []*iocb{{opcode: iocbPwrite, fildes: uint32(direct), buf: addr(mem[2<<12:]), nbytes: 1 << 12, offset: 1<<20 - 1<<12}})

	sameWhileRunning(t, m, src, dst)
}
