package capture

import "golang.org/x/sys/unix"

// syscallNumbers maps the syscall in a handler's name (enter_<name>,
// exit_<name>) to its number: the dispatchers index their tail-call tables
// by it. The BPF side reads x86-64 argument registers, hence this file's
// architecture.
var syscallNumbers = map[string]uint32{
	"write": unix.SYS_WRITE, "pwrite64": unix.SYS_PWRITE64, "writev": unix.SYS_WRITEV,
	"pwritev": unix.SYS_PWRITEV, "pwritev2": unix.SYS_PWRITEV2,
	"copy_file_range": unix.SYS_COPY_FILE_RANGE, "splice": unix.SYS_SPLICE, "sendfile64": unix.SYS_SENDFILE,
	"open": unix.SYS_OPEN, "openat": unix.SYS_OPENAT, "creat": unix.SYS_CREAT, "openat2": unix.SYS_OPENAT2,
	"mkdir": unix.SYS_MKDIR, "mkdirat": unix.SYS_MKDIRAT, "rmdir": unix.SYS_RMDIR,
	"unlink": unix.SYS_UNLINK, "unlinkat": unix.SYS_UNLINKAT, "truncate": unix.SYS_TRUNCATE,
	"chmod": unix.SYS_CHMOD, "fchmodat": unix.SYS_FCHMODAT, "fchmodat2": unix.SYS_FCHMODAT2,
	"chown": unix.SYS_CHOWN, "lchown": unix.SYS_LCHOWN, "fchownat": unix.SYS_FCHOWNAT,
	"fchown": unix.SYS_FCHOWN, "fchmod": unix.SYS_FCHMOD, "ftruncate": unix.SYS_FTRUNCATE,
	"fallocate": unix.SYS_FALLOCATE, "fsync": unix.SYS_FSYNC, "fdatasync": unix.SYS_FDATASYNC,
	"sync_file_range": unix.SYS_SYNC_FILE_RANGE, "syncfs": unix.SYS_SYNCFS, "sync": unix.SYS_SYNC,
	"msync": unix.SYS_MSYNC, "mmap": unix.SYS_MMAP, "utimensat": unix.SYS_UTIMENSAT,
	"rename": unix.SYS_RENAME, "renameat": unix.SYS_RENAMEAT, "renameat2": unix.SYS_RENAMEAT2,
	"link": unix.SYS_LINK, "linkat": unix.SYS_LINKAT, "symlink": unix.SYS_SYMLINK, "symlinkat": unix.SYS_SYMLINKAT,
	"io_submit": unix.SYS_IO_SUBMIT, "io_getevents": unix.SYS_IO_GETEVENTS, "io_pgetevents": unix.SYS_IO_PGETEVENTS,
}
