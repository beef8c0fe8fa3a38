// Shared between the BPF programs and, through bpf2go's -type, the Go
// capture package. Every struct here crosses the ring buffer: change it
// only together with `make generate`.
#ifndef WRITECAP_CAPTURE_H
#define WRITECAP_CAPTURE_H

enum limits {
	MAX_ROOTS = 4,
	PATH_LEN = 512,
	MAX_DEPTH = 64,
	/* Data chunk size classes: bpf_ringbuf_reserve needs a constant size. */
	CHUNK_S = 256,
	CHUNK_M = 4096,
	CHUNK_L = 32768,
};

enum ev_type {
	EV_WRITE = 1,  /* ev_write: bytes written, or a dirty range (EVF_DIRTY) */
	EV_OPEN,       /* O_CREAT/O_TRUNC open: h.ino, dir_ino, path1 = name */
	EV_TRUNCATE,   /* a = new size */
	EV_FALLOCATE,  /* mode, a = offset, b = length */
	EV_MKDIR,      /* path1, mode */
	EV_RMDIR,      /* path1 */
	EV_UNLINK,     /* path1, at_flags (AT_REMOVEDIR) */
	EV_RENAME,     /* path1 -> path2, at_flags = RENAME_* */
	EV_LINK,       /* path1 -> path2, at_flags = AT_* */
	EV_SYMLINK,    /* path1 = target, path2 = new link */
	EV_CHMOD,      /* mode */
	EV_CHOWN,      /* uid, gid (-1 = unchanged) */
	EV_UTIMES,     /* a,b = atime sec,nsec; c,d = mtime sec,nsec */
	EV_FSYNC,      /* barrier on h.ino */
	EV_SYNCFS,     /* barrier on the whole root */
	EV_SYNC,       /* barrier on every root */
	EV_MMAP,       /* shared writable mapping of h.ino */
	EV_MSYNC,      /* msync: barrier for mapped files */
};

/* ev_hdr.flags */
enum ev_flag {
	EVF_DIRTY = 1 << 0,        /* bytes not shipped: read them back */
	EVF_SYNC = 1 << 1,         /* O_SYNC/O_DSYNC/RWF_*SYNC write: a barrier */
	EVF_LAST = 1 << 2,         /* last chunk of a write */
	EVF_NOFOLLOW = 1 << 3,     /* path op does not follow a final symlink */
	EVF_PATH_TRUNC = 1 << 4,   /* a path did not fit PATH_LEN */
	EVF_BASE_OUTSIDE = 1 << 5, /* relative path from a base outside the roots */
	EVF_FD = 1 << 6,           /* the target is h.ino, not a path */
	EVF_EMPTY_PATH = 1 << 7,   /* AT_EMPTY_PATH: the link source is h.ino */
	EVF_CREATED = 1 << 8,      /* the open made a new inode (FMODE_CREATED) */
};

enum { NO_ROOT = 0xffffffff };

struct ev_hdr {
	__u64 seq;      /* global order, taken after the ring slot is reserved */
	__u64 enter_ns; /* syscall entry (bpf_ktime_get_ns) */
	__u64 exit_ns;  /* syscall completion */
	__u64 ino;      /* target inode when known from a descriptor */
	__u32 type;     /* enum ev_type */
	__u32 root;     /* index of the protected root */
	__u32 tgid;
	__u32 flags;    /* EVF_* */
};

struct ev_write {
	struct ev_hdr h;
	__s64 off; /* file offset of data[0] */
	__s64 lo;  /* the whole write lies within [lo, hi): races are */
	__s64 hi;  /* judged on this range, not on the chunk */
	__u32 len; /* bytes in data (0 for EVF_DIRTY: hi-lo is the range) */
	__u32 fflags;
};

struct ev_meta {
	struct ev_hdr h;
	__u64 dir_ino;  /* base directory of path1 (0: absolute) */
	__u64 dir2_ino; /* base directory of path2 (0: absolute) */
	__s64 a, b, c, d;
	__u32 mode;
	__u32 uid;
	__u32 gid;
	__u32 at_flags;
	__u32 root2;    /* root of path2 (rename, link, symlink) */
	__u32 pad;
	char path1[PATH_LEN];
	char path2[PATH_LEN];
};


/* A protected root, set before load as read-only data. */
struct root_cfg {
	__u64 dev; /* kernel dev_t (MAJOR << 20 | MINOR) */
	__u64 ino;
	__u32 len; /* of path, without the NUL */
	__u32 pad;
	char path[PATH_LEN]; /* absolute, clean, NUL padded */
};

struct loss_key {
	__u64 ino;
	__u32 root;
	__u32 pad;
};

/* Per-CPU, so a CPU's lo and hi mean something only where its count is
 * not 0. */
struct loss_val {
	__s64 lo;
	__s64 hi;
	__u64 count;
};

/* Indices into the counters array. */
enum counter {
	CNT_RING_FULL = 0,   /* data or metadata lost: ring buffer full */
	CNT_META_LOST,       /* metadata record lost: whole-root repair */
	CNT_INFLIGHT_FULL,   /* a syscall could not be tracked */
	CNT_LOSS_FULL,       /* loss map full: whole-root repair */
	CNT_TOO_DEEP,        /* path deeper than MAX_DEPTH under a protected fs */
	CNT_URING_NAMES,     /* names changed through io_uring: walk the roots' names */
	CNT_AIO_MANY,        /* more AIO requests in one call than looked at: walk */
	CNT_URING_LOST,      /* an io_uring completion could not be told apart: walk */
	CNT_URING_TRUNC,     /* an O_TRUNC open through io_uring: walk names and contents */
	CNT_MAX,
};

#endif
