//go:build ignore

// writecap capture: the raw syscall tracepoints only (kprobes, fentry and LSM
// do not load on the kernels we target). Two dispatchers on raw_tp sys_enter
// and sys_exit tail-call one program per syscall of interest, so every other
// syscall costs a table lookup; raw tracepoints also skip the perf buffer
// that classic syscall tracepoints fill before a program runs. Every change
// is reported at sys_exit, after the kernel returned success, with the byte
// count it returned. Argument registers are x86-64's.

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include "capture.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

#define AT_FDCWD -100
#define AT_SYMLINK_NOFOLLOW 0x100
#define AT_REMOVEDIR 0x200
#define AT_EMPTY_PATH 0x1000
#define O_TRUNC 01000
#define O_CREAT 0100
#define O_APPEND 02000
#define O_DSYNC 010000
#define __O_SYNC 04000000
#define RWF_DSYNC 0x2
#define RWF_SYNC 0x4
#define RWF_APPEND 0x10
#define S_IFMT 00170000
#define S_IFREG 0100000
#define S_IFDIR 0040000
#define MAP_SHARED 0x01
#define MAP_SHARED_VALIDATE 0x03
#define PROT_WRITE 0x2
#define SYNC_FILE_RANGE_WAIT_AFTER 4
#define FMODE_CREATED (1 << 20)

/* Set by the loader. */
const volatile __u32 self_tgid = 0;
const volatile __u32 nroots = 0;
const volatile __u64 max_data = 8 << 20;
const volatile __u64 wakeup_bytes = 4 << 20;
const volatile struct root_cfg roots[MAX_ROOTS] = {};

/* Keep these in BTF so bpf2go can generate their Go types. */
const enum ev_type *unused_ev_type __attribute__((unused));
const enum counter *unused_counter __attribute__((unused));
const enum limits *unused_limits __attribute__((unused));
const enum ev_flag *unused_ev_flag __attribute__((unused));
const struct ev_write *unused_ev_write __attribute__((unused));

__u64 seq_next = 1;
__u32 ns_gen = 0;

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 64 << 20);
} events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, CNT_MAX);
	__type(key, __u32);
	__type(value, __u64);
} counters SEC(".maps");

/*
 * Lost ranges go to one of two maps, the one in loss_slot. User space swaps
 * the slot to the other map and then reads and empties the retired one: the
 * update of a map-in-map slot returns only after every program that may
 * have looked up the old map has finished (synchronize_rcu), so nothing is
 * written into a map while it is read. Each read so yields the ranges lost
 * since the previous one, not everything ever lost to a file.
 */
struct loss_map {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, 65536);
	__type(key, struct loss_key);
	__type(value, struct loss_val);
} losses_a SEC(".maps"), losses_b SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
	__uint(max_entries, 1);
	__type(key, __u32);
	__array(values, struct loss_map);
} loss_slot SEC(".maps") = {
	.values = { &losses_a },
};

/* The end of a range that runs to the end of the file, however long. */
#define TO_EOF 0x7fffffffffffffffLL

enum wkind { K_WRITE = 1, K_PWRITE, K_WRITEV, K_PWRITEV, K_PWRITEV2, K_COPY, K_COPY_POS };

struct wr_in {
	__u64 ino;
	__u64 file;
	__u64 buf;   /* buffer, iovec array, or the offset pointer of K_COPY_POS */
	__u64 cnt;   /* bytes, or iovec count */
	__s64 pos;   /* positional writes */
	__s64 lo;    /* file position or size at entry */
	__u64 enter_ns;
	__u32 kind;
	__u32 root;
	__u32 rwf;
	__u32 fflags;
};

/* Per-thread: the write in flight between sys_enter and sys_exit. */
struct {
	__uint(type, BPF_MAP_TYPE_TASK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct wr_in);
} inflight_w SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, __u64);
	__type(value, struct ev_meta);
} inflight_m SEC(".maps");

struct open_in {
	__u64 enter_ns;
	__u32 flags;
	__u32 pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, __u64);
	__type(value, struct open_in);
} inflight_o SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct ev_meta);
} scratch SEC(".maps");

struct fcache_val {
	__u64 dentry;
	__u32 gen;
	__s32 root;
};

/* Verdict per open file; a rename anywhere bumps ns_gen and so invalidates it. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, __u64);
	__type(value, struct fcache_val);
} fcache SEC(".maps");

/* Handlers by syscall number, filled by the loader. */
struct {
	__uint(type, BPF_MAP_TYPE_PROG_ARRAY);
	__uint(max_entries, 512);
	__type(key, __u32);
	__type(value, __u32);
} enter_calls SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PROG_ARRAY);
	__uint(max_entries, 512);
	__type(key, __u32);
	__type(value, __u32);
} exit_calls SEC(".maps");

static __always_inline void count(__u32 idx)
{
	__u64 *v = bpf_map_lookup_elem(&counters, &idx);
	if (v)
		*v += 1;
}

static __always_inline int is_self(void)
{
	return (bpf_get_current_pid_tgid() >> 32) == self_tgid;
}

static __always_inline int dev_protected(__u64 dev)
{
	for (__u32 i = 0; i < MAX_ROOTS && i < nroots; i++)
		if (roots[i].dev == dev)
			return i;
	return -1;
}

/*
 * Kernel structures are read through BTF-typed pointers: the loads compile
 * to plain (fault-handled) loads instead of a bpf_probe_read_kernel call
 * each, which on the hot path of every write is most of the cost.
 */
extern void *bpf_rdonly_cast(const void *obj__ign, __u32 btf_id__k) __ksym;
#define kcast(p, T) ((T *)bpf_rdonly_cast((void *)(p), bpf_core_type_id_kernel(T)))

static __always_inline struct file *fd_file(int fd)
{
	struct task_struct *t = bpf_get_current_task_btf();
	struct fdtable *fdt = t->files->fdt;
	struct file *f = NULL;

	if (fd < 0 || (unsigned int)fd >= fdt->max_fds)
		return NULL;
	bpf_probe_read_kernel(&f, sizeof(f), &fdt->fd[fd]);
	if (!f)
		return NULL;
	return kcast(f, struct file);
}

/* Index of the protected root at or above d, or -1. */
static __always_inline int walk_root(struct dentry *d)
{
	for (int i = 0; i < MAX_DEPTH; i++) {
		struct inode *in = d->d_inode;
		if (!in)
			return -1;
		__u64 ino = in->i_ino;
		__u64 dev = in->i_sb->s_dev;

		for (__u32 r = 0; r < MAX_ROOTS && r < nroots; r++)
			if (roots[r].ino == ino && roots[r].dev == dev)
				return r;
		struct dentry *p = d->d_parent;
		if (!p || p == d)
			return -1;
		d = p;
	}
	count(CNT_TOO_DEEP);
	return -1;
}

static __always_inline int file_root(struct file *f)
{
	struct inode *in = f->f_inode;
	__u64 key = (__u64)f;

	if (!in || dev_protected(in->i_sb->s_dev) < 0)
		return -1;
	struct dentry *d = f->f_path.dentry;
	__u32 gen = ns_gen;
	struct fcache_val *v = bpf_map_lookup_elem(&fcache, &key);
	if (v && v->dentry == (__u64)d && v->gen == gen)
		return v->root;
	struct fcache_val nv = { .dentry = (__u64)d, .gen = gen };
	nv.root = walk_root(d);
	bpf_map_update_elem(&fcache, &key, &nv, BPF_ANY);
	return nv.root;
}

static __always_inline __u64 file_ino(struct file *f)
{
	return f->f_inode->i_ino;
}

/*
 * The range is in the map before the loss is counted: user space that sees
 * the count and then swaps the maps finds the range in the one it retires.
 */
static __always_inline void note_loss(__u64 ino, __u32 root, __s64 lo, __s64 hi)
{
	struct loss_key k = { .ino = ino, .root = root };
	struct loss_val *v;
	__u32 zero = 0;
	void *m;

	m = bpf_map_lookup_elem(&loss_slot, &zero);
	if (!m)
		goto full;
	v = bpf_map_lookup_elem(m, &k);
	if (!v) {
		struct loss_val nv = { .lo = lo, .hi = hi, .count = 1 };
		if (bpf_map_update_elem(m, &k, &nv, BPF_NOEXIST) == 0)
			goto counted;
		v = bpf_map_lookup_elem(m, &k);
		if (!v)
			goto full;
	}
	if (v->count == 0 || lo < v->lo)
		v->lo = lo;
	if (v->count == 0 || hi > v->hi)
		v->hi = hi;
	v->count++;
	goto counted;
full:
	count(CNT_LOSS_FULL);
counted:
	count(CNT_RING_FULL);
}

/*
 * Only the record that takes the unread data across wakeup_bytes wakes the
 * reader, which then reads until the ring is empty; it also polls on a short
 * deadline, so a crossing missed to a race costs latency, never data. Waking
 * on every record past the mark instead costs each write an interrupt (a VM
 * exit on a guest) for as long as the reader is busy elsewhere.
 */
static __always_inline __u64 rb_flags(__u64 size)
{
	__u64 rec = (size + 8 + 7) & ~7ULL; /* with the ring's own header */
	__u64 avail = bpf_ringbuf_query(&events, BPF_RB_AVAIL_DATA);

	if (avail >= wakeup_bytes && avail - rec < wakeup_bytes)
		return BPF_RB_FORCE_WAKEUP;
	return BPF_RB_NO_WAKEUP;
}

static __always_inline void stamp(struct ev_hdr *h)
{
	h->seq = __sync_fetch_and_add(&seq_next, 1);
	h->exit_ns = bpf_ktime_get_ns();
}

/* ---- writes ---- */

struct wctx {
	struct ev_hdr h;
	__s64 off;
	__s64 lo;
	__s64 hi;
	__u64 iov;       /* next struct iovec, or 0 for a plain buffer */
	__u64 iov_left;  /* iovecs not yet loaded */
	__u64 base;      /* current user buffer */
	__u64 left;      /* bytes left in the current buffer */
	__u64 remaining; /* bytes of the write not yet shipped */
	__u32 fflags;
	__u32 failed;
};

#define DEFINE_EMIT(SZ)                                                          \
	static __always_inline int emit_##SZ(struct wctx *c, __u32 n)              \
	{                                                                          \
		struct ev_write *e = bpf_ringbuf_reserve(&events, sizeof(*e) + SZ, 0); \
		if (!e)                                                                \
			return -1;                                                     \
		if (n > SZ)                                                            \
			n = SZ;                                                        \
		e->h = c->h;                                                           \
		e->off = c->off;                                                       \
		e->lo = c->lo;                                                         \
		e->hi = c->hi;                                                         \
		e->fflags = c->fflags;                                                 \
		e->len = n;                                                            \
		if (bpf_probe_read_user((void *)(e + 1), n, (void *)c->base)) {        \
			/* not resident: user space reads these bytes back */          \
			e->h.flags |= EVF_DIRTY;                                       \
			e->len = 0;                                                    \
			e->lo = c->off;                                                \
			e->hi = c->off + n;                                            \
		}                                                                      \
		if (c->remaining == n)                                                 \
			e->h.flags |= EVF_LAST;                                        \
		stamp(&e->h);                                                          \
		bpf_ringbuf_submit(e, rb_flags(sizeof(*e) + SZ));                      \
		return 0;                                                              \
	}

DEFINE_EMIT(CHUNK_S)
DEFINE_EMIT(CHUNK_M)
DEFINE_EMIT(CHUNK_L)

static long write_chunk(__u64 i, void *arg)
{
	struct wctx *c = arg;
	struct iovec v;

	if (c->remaining == 0)
		return 1;
	if (c->left == 0) {
		if (!c->iov || c->iov_left == 0) {
			c->failed = 1;
			return 1;
		}
		if (bpf_probe_read_user(&v, sizeof(v), (void *)c->iov)) {
			c->failed = 1;
			return 1;
		}
		c->iov += sizeof(v);
		c->iov_left--;
		c->base = (__u64)v.iov_base;
		c->left = v.iov_len;
		return 0;
	}
	__u64 n = c->left;
	if (n > c->remaining)
		n = c->remaining;
	if (n > CHUNK_L)
		n = CHUNK_L;
	int err;
	if (n <= CHUNK_S)
		err = emit_CHUNK_S(c, n);
	else if (n <= CHUNK_M)
		err = emit_CHUNK_M(c, n);
	else
		err = emit_CHUNK_L(c, n);
	if (err) {
		c->failed = 1;
		return 1;
	}
	c->base += n;
	c->left -= n;
	c->remaining -= n;
	c->off += n;
	return 0;
}

static __always_inline int write_enter(int kind, int fd, __u64 buf, __u64 cnt, __s64 pos, __u32 rwf)
{
	if (is_self())
		return 0;
	struct file *f = fd_file(fd);
	if (!f)
		return 0;
	struct inode *in = f->f_inode;
	if (!in || (in->i_mode & S_IFMT) != S_IFREG)
		return 0;
	int root = file_root(f);
	if (root < 0)
		return 0;

	struct wr_in *wp = bpf_task_storage_get(&inflight_w, bpf_get_current_task_btf(), 0, BPF_LOCAL_STORAGE_GET_F_CREATE);
	if (!wp) {
		count(CNT_INFLIGHT_FULL);
		note_loss(in->i_ino, root, 0, TO_EOF);
		return 0;
	}
	struct wr_in w = {
		.ino = in->i_ino,
		.file = (__u64)f,
		.buf = buf,
		.cnt = cnt,
		.pos = pos,
		.enter_ns = bpf_ktime_get_ns(),
		.kind = kind,
		.root = root,
		.rwf = rwf,
		.fflags = f->f_flags,
	};
	if ((w.fflags & O_APPEND) || (rwf & RWF_APPEND))
		w.lo = in->i_size;
	else
		w.lo = f->f_pos;
	*wp = w;
	return 0;
}

static __always_inline int write_exit(long ret)
{
	__u64 id = bpf_get_current_pid_tgid();
	struct wr_in *w = bpf_task_storage_get(&inflight_w, bpf_get_current_task_btf(), 0, 0);
	if (!w || !w->kind)
		return 0;
	if (ret <= 0)
		goto out;

	struct file *f = kcast(w->file, struct file);
	struct wctx c = {};
	int positional = 0, append = (w->fflags & O_APPEND) || (w->rwf & RWF_APPEND);

	switch (w->kind) {
	case K_PWRITE:
	case K_PWRITEV:
		positional = 1;
		break;
	case K_PWRITEV2:
		positional = w->pos != -1;
		break;
	}
	if (append) {
		/* O_APPEND wins even over pwrite's offset. */
		__s64 size = f->f_inode->i_size;
		c.off = size - ret;
		c.lo = w->lo < c.off ? w->lo : c.off;
		c.hi = size;
	} else if (positional) {
		c.off = w->pos;
		c.lo = c.off;
		c.hi = c.off + ret;
	} else if (w->kind == K_COPY_POS) {
		__s64 after = 0;
		bpf_probe_read_user(&after, sizeof(after), (void *)w->buf);
		c.off = after - ret;
		c.lo = c.off;
		c.hi = after;
	} else {
		__s64 fpos = f->f_pos;
		c.off = fpos - ret;
		c.lo = w->lo < c.off ? w->lo : c.off;
		c.hi = fpos > c.off + ret ? fpos : c.off + ret;
	}

	c.h.enter_ns = w->enter_ns;
	c.h.ino = w->ino;
	c.h.type = EV_WRITE;
	c.h.root = w->root;
	c.h.tgid = id >> 32;
	c.fflags = w->fflags;
	if ((w->fflags & (O_DSYNC | __O_SYNC)) || (w->rwf & (RWF_SYNC | RWF_DSYNC)))
		c.h.flags |= EVF_SYNC;

	if (w->kind == K_COPY || w->kind == K_COPY_POS || (__u64)ret > max_data) {
		struct ev_write *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
		if (!e) {
			note_loss(w->ino, w->root, c.lo, c.hi);
			goto out;
		}
		e->h = c.h;
		e->h.flags |= EVF_DIRTY | EVF_LAST;
		e->off = c.off;
		e->lo = c.lo;
		e->hi = c.hi;
		e->len = 0;
		e->fflags = c.fflags;
		stamp(&e->h);
		bpf_ringbuf_submit(e, rb_flags(sizeof(*e)));
		goto out;
	}

	c.remaining = ret;
	if (w->kind == K_WRITEV || w->kind == K_PWRITEV || w->kind == K_PWRITEV2) {
		c.iov = w->buf;
		c.iov_left = w->cnt;
	} else {
		c.base = w->buf;
		c.left = ret;
	}
	/* The common small write needs no loop. */
	if (!c.iov && ret <= CHUNK_M)
		write_chunk(0, &c);
	else
		bpf_loop(8192, write_chunk, &c, 0);
	if (c.remaining)
		note_loss(w->ino, w->root, c.off, c.off + c.remaining);
out:
	w->kind = 0;
	return 0;
}

/* The syscall's arguments, from the registers it was entered with. */
static __always_inline unsigned long sysarg(struct bpf_raw_tracepoint_args *ctx, int i)
{
	struct pt_regs *regs = kcast(ctx->args[0], struct pt_regs);

	switch (i) {
	case 0:
		return regs->di;
	case 1:
		return regs->si;
	case 2:
		return regs->dx;
	case 3:
		return regs->r10;
	case 4:
		return regs->r8;
	default:
		return regs->r9;
	}
}

#define ARG(i) sysarg(ctx, i)

SEC("raw_tp/sys_enter")
int enter_write(struct bpf_raw_tracepoint_args *ctx)
{
	return write_enter(K_WRITE, ARG(0), ARG(1), ARG(2), 0, 0);
}

SEC("raw_tp/sys_enter")
int enter_pwrite64(struct bpf_raw_tracepoint_args *ctx)
{
	return write_enter(K_PWRITE, ARG(0), ARG(1), ARG(2), ARG(3), 0);
}

SEC("raw_tp/sys_enter")
int enter_writev(struct bpf_raw_tracepoint_args *ctx)
{
	return write_enter(K_WRITEV, ARG(0), ARG(1), ARG(2), 0, 0);
}

SEC("raw_tp/sys_enter")
int enter_pwritev(struct bpf_raw_tracepoint_args *ctx)
{
	return write_enter(K_PWRITEV, ARG(0), ARG(1), ARG(2), ARG(3), 0);
}

SEC("raw_tp/sys_enter")
int enter_pwritev2(struct bpf_raw_tracepoint_args *ctx)
{
	return write_enter(K_PWRITEV2, ARG(0), ARG(1), ARG(2), ARG(3), ARG(5));
}

/* copy_file_range(in, off_in, out, off_out, len, flags) */
SEC("raw_tp/sys_enter")
int enter_copy_file_range(struct bpf_raw_tracepoint_args *ctx)
{
	return write_enter(ARG(3) ? K_COPY_POS : K_COPY, ARG(2), ARG(3), 0, 0, 0);
}

/* splice(in, off_in, out, off_out, len, flags) */
SEC("raw_tp/sys_enter")
int enter_splice(struct bpf_raw_tracepoint_args *ctx)
{
	return write_enter(ARG(3) ? K_COPY_POS : K_COPY, ARG(2), ARG(3), 0, 0, 0);
}

/* sendfile(out, in, offset, count): writes at out's file position */
SEC("raw_tp/sys_enter")
int enter_sendfile64(struct bpf_raw_tracepoint_args *ctx)
{
	return write_enter(K_COPY, ARG(0), 0, 0, 0, 0);
}

#define WRITE_EXIT(name)                                        \
	SEC("raw_tp/sys_exit")              \
	int exit_##name(struct bpf_raw_tracepoint_args *ctx)   \
	{                                                       \
		return write_exit((long)ctx->args[1]);                    \
	}

WRITE_EXIT(write)
WRITE_EXIT(pwrite64)
WRITE_EXIT(writev)
WRITE_EXIT(pwritev)
WRITE_EXIT(pwritev2)
WRITE_EXIT(copy_file_range)
WRITE_EXIT(splice)
WRITE_EXIT(sendfile64)

/* ---- opens that create or truncate ---- */

static __always_inline int open_enter(__u32 flags)
{
	if (is_self() || !(flags & (O_CREAT | O_TRUNC)))
		return 0;
	__u64 id = bpf_get_current_pid_tgid();
	struct open_in o = { .enter_ns = bpf_ktime_get_ns(), .flags = flags };
	if (bpf_map_update_elem(&inflight_o, &id, &o, BPF_ANY))
		count(CNT_INFLIGHT_FULL);
	return 0;
}

static __always_inline int open_exit(long ret)
{
	__u64 id = bpf_get_current_pid_tgid();
	struct open_in *o = bpf_map_lookup_elem(&inflight_o, &id);
	if (!o)
		return 0;
	if (ret < 0)
		goto out;
	struct file *f = fd_file(ret);
	if (!f)
		goto out;
	struct inode *in = f->f_inode;
	if (!in)
		goto out;
	__u32 mode = in->i_mode;
	if ((mode & S_IFMT) != S_IFREG)
		goto out;
	if (dev_protected(in->i_sb->s_dev) < 0)
		goto out;
	struct dentry *d = f->f_path.dentry;
	struct dentry *parent = d->d_parent;
	int root = walk_root(parent);
	if (root < 0)
		goto out;
	struct ev_meta *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e) {
		count(CNT_META_LOST);
		note_loss(in->i_ino, root, 0, TO_EOF);
		goto out;
	}
	e->h.enter_ns = o->enter_ns;
	e->h.ino = in->i_ino;
	e->h.type = EV_OPEN;
	e->h.root = root;
	e->h.tgid = id >> 32;
	e->h.flags = EVF_FD;
	e->dir_ino = parent->d_inode ? parent->d_inode->i_ino : 0;
	e->dir2_ino = 0;
	if (f->f_mode & FMODE_CREATED)
		e->h.flags |= EVF_CREATED;
	e->a = in->i_size;
	e->b = e->c = e->d = 0;
	e->mode = mode;
	e->uid = in->i_uid.val;
	e->gid = in->i_gid.val;
	e->at_flags = o->flags;
	e->root2 = NO_ROOT;
	e->pad = 0;
	const unsigned char *name = d->d_name.name;
	bpf_probe_read_kernel_str(e->path1, PATH_LEN, name);
	e->path2[0] = 0;
	stamp(&e->h);
	bpf_ringbuf_submit(e, rb_flags(sizeof(*e)));
out:
	bpf_map_delete_elem(&inflight_o, &id);
	return 0;
}

SEC("raw_tp/sys_enter")
int enter_open(struct bpf_raw_tracepoint_args *ctx) { return open_enter(ARG(1)); }

SEC("raw_tp/sys_enter")
int enter_openat(struct bpf_raw_tracepoint_args *ctx) { return open_enter(ARG(2)); }

SEC("raw_tp/sys_enter")
int enter_creat(struct bpf_raw_tracepoint_args *ctx) { return open_enter(O_CREAT | O_TRUNC); }

SEC("raw_tp/sys_enter")
int enter_openat2(struct bpf_raw_tracepoint_args *ctx)
{
	__u64 flags = 0;
	bpf_probe_read_user(&flags, sizeof(flags), (void *)ARG(2));
	return open_enter(flags);
}

#define OPEN_EXIT(name)                                         \
	SEC("raw_tp/sys_exit")              \
	int exit_##name(struct bpf_raw_tracepoint_args *ctx)   \
	{                                                       \
		return open_exit((long)ctx->args[1]);                     \
	}

OPEN_EXIT(open)
OPEN_EXIT(openat)
OPEN_EXIT(creat)
OPEN_EXIT(openat2)

/* ---- metadata and namespace ---- */

static __always_inline struct ev_meta *meta_start(__u32 type)
{
	__u32 zero = 0;
	struct ev_meta *m = bpf_map_lookup_elem(&scratch, &zero);
	if (!m)
		return NULL;
	m->h.seq = 0;
	m->h.enter_ns = bpf_ktime_get_ns();
	m->h.exit_ns = 0;
	m->h.ino = 0;
	m->h.type = type;
	m->h.root = NO_ROOT;
	m->h.tgid = bpf_get_current_pid_tgid() >> 32;
	m->h.flags = 0;
	m->dir_ino = m->dir2_ino = 0;
	m->a = m->b = m->c = m->d = 0;
	m->mode = m->uid = m->gid = m->at_flags = 0;
	m->root2 = NO_ROOT;
	m->pad = 0;
	m->path1[0] = 0;
	m->path2[0] = 0;
	return m;
}

static __always_inline int meta_save(struct ev_meta *m)
{
	__u64 id = bpf_get_current_pid_tgid();
	if (bpf_map_update_elem(&inflight_m, &id, m, BPF_ANY)) {
		count(CNT_INFLIGHT_FULL);
		count(CNT_META_LOST);
	}
	return 0;
}

/* Matches an absolute path against the roots' paths. */
static __always_inline int match_abs(const char *p)
{
	for (__u32 r = 0; r < MAX_ROOTS && r < nroots; r++) {
		__u32 len = roots[r].len;
		__u32 i;
		if (len == 0 || len >= PATH_LEN)
			continue;
		for (i = 0; i < PATH_LEN - 1; i++) {
			if (i >= len)
				break;
			if (p[i] != roots[r].path[i])
				break;
		}
		if (i != len)
			continue;
		char next = p[len & (PATH_LEN - 1)];
		if (next == '/' || next == 0)
			return r;
	}
	return -1;
}

static __always_inline struct dentry *base_dentry(int dfd)
{
	if (dfd == AT_FDCWD) {
		struct task_struct *t = bpf_get_current_task_btf();
		return t->fs->pwd.dentry;
	}
	struct file *f = fd_file(dfd);
	if (!f)
		return NULL;
	return f->f_path.dentry;
}

/*
 * Copies a user path into dst and decides its root. Relative paths are
 * judged by their base directory; *dir_ino receives the base's inode.
 */
static __always_inline int path_root(int dfd, const char *up, char *dst, __u64 *dir_ino, __u32 *flags)
{
	long n = bpf_probe_read_user_str(dst, PATH_LEN, up);
	if (n < 0)
		return -1;
	if (n >= PATH_LEN)
		*flags |= EVF_PATH_TRUNC;
	if (dst[0] == '/') {
		*dir_ino = 0;
		return match_abs(dst);
	}
	struct dentry *d = base_dentry(dfd);
	if (!d)
		return -1;
	struct inode *din = d->d_inode;
	if (!din || dev_protected(din->i_sb->s_dev) < 0)
		return -1;
	*dir_ino = din->i_ino;
	int r = walk_root(d);
	if (r < 0 && dst[0] == '.' && dst[1] == '.') {
		*flags |= EVF_BASE_OUTSIDE;
		return MAX_ROOTS;
	}
	return r;
}

/* One path argument. */
static __always_inline int path1_enter(__u32 type, int dfd, const char *p, __u32 at_flags, __u32 mode)
{
	if (is_self())
		return 0;
	struct ev_meta *m = meta_start(type);
	if (!m)
		return 0;
	m->at_flags = at_flags;
	m->mode = mode;
	if ((at_flags & AT_EMPTY_PATH)) {
		char c = 0;
		bpf_probe_read_user(&c, 1, p);
		if (c == 0) {
			struct file *f = fd_file(dfd);
			if (!f)
				return 0;
			int root = file_root(f);
			if (root < 0)
				return 0;
			m->h.root = root;
			m->h.ino = file_ino(f);
			m->h.flags |= EVF_FD;
			return meta_save(m);
		}
	}
	int root = path_root(dfd, p, m->path1, &m->dir_ino, &m->h.flags);
	if (root < 0)
		return 0;
	m->h.root = root;
	if (at_flags & AT_SYMLINK_NOFOLLOW)
		m->h.flags |= EVF_NOFOLLOW;
	return meta_save(m);
}

/* Two path arguments: rename, link, symlink (path1 is then the target text). */
static __always_inline int path2_enter(__u32 type, int dfd1, const char *p1, int dfd2, const char *p2, __u32 at_flags)
{
	if (is_self())
		return 0;
	struct ev_meta *m = meta_start(type);
	if (!m)
		return 0;
	m->at_flags = at_flags;
	int r1 = -1;
	if (type == EV_SYMLINK) {
		if (bpf_probe_read_user_str(m->path1, PATH_LEN, p1) >= PATH_LEN)
			m->h.flags |= EVF_PATH_TRUNC;
	} else if ((at_flags & AT_EMPTY_PATH) && type == EV_LINK) {
		struct file *f = fd_file(dfd1);
		if (f) {
			r1 = file_root(f);
			m->h.ino = file_ino(f);
			m->h.flags |= EVF_EMPTY_PATH;
		}
	} else {
		r1 = path_root(dfd1, p1, m->path1, &m->dir_ino, &m->h.flags);
	}
	int r2 = path_root(dfd2, p2, m->path2, &m->dir2_ino, &m->h.flags);
	if (r1 < 0 && r2 < 0)
		return 0;
	m->h.root = r1 < 0 ? NO_ROOT : r1;
	m->root2 = r2 < 0 ? NO_ROOT : r2;
	return meta_save(m);
}

/* An operation on an open descriptor. */
static __always_inline int fd_enter(__u32 type, int fd, __s64 a, __s64 b, __u32 mode)
{
	if (is_self())
		return 0;
	struct file *f = fd_file(fd);
	if (!f)
		return 0;
	int root;
	if (type == EV_SYNCFS)
		root = f->f_inode ? dev_protected(f->f_inode->i_sb->s_dev) : -1;
	else
		root = file_root(f);
	if (root < 0)
		return 0;
	struct ev_meta *m = meta_start(type);
	if (!m)
		return 0;
	m->h.root = root;
	m->h.ino = file_ino(f);
	m->h.flags = EVF_FD;
	m->a = a;
	m->b = b;
	m->mode = mode;
	return meta_save(m);
}

static __always_inline int meta_exit(long ret, int mmap)
{
	__u64 id = bpf_get_current_pid_tgid();
	struct ev_meta *in = bpf_map_lookup_elem(&inflight_m, &id);
	if (!in)
		return 0;
	if (mmap ? (ret < 0 && ret > -4096) : ret != 0)
		goto out;
	if (in->h.type == EV_RENAME)
		__sync_fetch_and_add(&ns_gen, 1);
	struct ev_meta *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e) {
		count(CNT_RING_FULL);
		count(CNT_META_LOST);
		goto out;
	}
	bpf_probe_read_kernel(e, sizeof(*e), in);
	stamp(&e->h);
	bpf_ringbuf_submit(e, rb_flags(sizeof(*e)));
out:
	bpf_map_delete_elem(&inflight_m, &id);
	return 0;
}

SEC("raw_tp/sys_enter")
int enter_mkdir(struct bpf_raw_tracepoint_args *ctx) { return path1_enter(EV_MKDIR, AT_FDCWD, (void *)ARG(0), 0, ARG(1)); }

SEC("raw_tp/sys_enter")
int enter_mkdirat(struct bpf_raw_tracepoint_args *ctx) { return path1_enter(EV_MKDIR, ARG(0), (void *)ARG(1), 0, ARG(2)); }

SEC("raw_tp/sys_enter")
int enter_rmdir(struct bpf_raw_tracepoint_args *ctx) { return path1_enter(EV_RMDIR, AT_FDCWD, (void *)ARG(0), AT_SYMLINK_NOFOLLOW, 0); }

SEC("raw_tp/sys_enter")
int enter_unlink(struct bpf_raw_tracepoint_args *ctx) { return path1_enter(EV_UNLINK, AT_FDCWD, (void *)ARG(0), AT_SYMLINK_NOFOLLOW, 0); }

SEC("raw_tp/sys_enter")
int enter_unlinkat(struct bpf_raw_tracepoint_args *ctx)
{
	__u32 fl = ARG(2);
	return path1_enter(fl & AT_REMOVEDIR ? EV_RMDIR : EV_UNLINK, ARG(0), (void *)ARG(1), AT_SYMLINK_NOFOLLOW, 0);
}

SEC("raw_tp/sys_enter")
int enter_truncate(struct bpf_raw_tracepoint_args *ctx)
{
	int r = path1_enter(EV_TRUNCATE, AT_FDCWD, (void *)ARG(0), 0, 0);
	__u64 id = bpf_get_current_pid_tgid();
	struct ev_meta *m = bpf_map_lookup_elem(&inflight_m, &id);
	if (m && m->h.type == EV_TRUNCATE)
		m->a = ARG(1);
	return r;
}

SEC("raw_tp/sys_enter")
int enter_chmod(struct bpf_raw_tracepoint_args *ctx) { return path1_enter(EV_CHMOD, AT_FDCWD, (void *)ARG(0), 0, ARG(1)); }

SEC("raw_tp/sys_enter")
int enter_fchmodat(struct bpf_raw_tracepoint_args *ctx) { return path1_enter(EV_CHMOD, ARG(0), (void *)ARG(1), 0, ARG(2)); }

SEC("raw_tp/sys_enter")
int enter_fchmodat2(struct bpf_raw_tracepoint_args *ctx) { return path1_enter(EV_CHMOD, ARG(0), (void *)ARG(1), ARG(3), ARG(2)); }

static __always_inline int chown_enter(int dfd, const char *p, __u32 uid, __u32 gid, __u32 at)
{
	int r = path1_enter(EV_CHOWN, dfd, p, at, 0);
	__u64 id = bpf_get_current_pid_tgid();
	struct ev_meta *m = bpf_map_lookup_elem(&inflight_m, &id);
	if (m && m->h.type == EV_CHOWN) {
		m->uid = uid;
		m->gid = gid;
	}
	return r;
}

SEC("raw_tp/sys_enter")
int enter_chown(struct bpf_raw_tracepoint_args *ctx) { return chown_enter(AT_FDCWD, (void *)ARG(0), ARG(1), ARG(2), 0); }

SEC("raw_tp/sys_enter")
int enter_lchown(struct bpf_raw_tracepoint_args *ctx) { return chown_enter(AT_FDCWD, (void *)ARG(0), ARG(1), ARG(2), AT_SYMLINK_NOFOLLOW); }

SEC("raw_tp/sys_enter")
int enter_fchownat(struct bpf_raw_tracepoint_args *ctx) { return chown_enter(ARG(0), (void *)ARG(1), ARG(2), ARG(3), ARG(4)); }

SEC("raw_tp/sys_enter")
int enter_fchown(struct bpf_raw_tracepoint_args *ctx)
{
	int r = fd_enter(EV_CHOWN, ARG(0), 0, 0, 0);
	__u64 id = bpf_get_current_pid_tgid();
	struct ev_meta *m = bpf_map_lookup_elem(&inflight_m, &id);
	if (m && m->h.type == EV_CHOWN) {
		m->uid = ARG(1);
		m->gid = ARG(2);
	}
	return r;
}

SEC("raw_tp/sys_enter")
int enter_fchmod(struct bpf_raw_tracepoint_args *ctx) { return fd_enter(EV_CHMOD, ARG(0), 0, 0, ARG(1)); }

SEC("raw_tp/sys_enter")
int enter_ftruncate(struct bpf_raw_tracepoint_args *ctx) { return fd_enter(EV_TRUNCATE, ARG(0), ARG(1), 0, 0); }

SEC("raw_tp/sys_enter")
int enter_fallocate(struct bpf_raw_tracepoint_args *ctx) { return fd_enter(EV_FALLOCATE, ARG(0), ARG(2), ARG(3), ARG(1)); }

SEC("raw_tp/sys_enter")
int enter_fsync(struct bpf_raw_tracepoint_args *ctx) { return fd_enter(EV_FSYNC, ARG(0), 0, 0, 0); }

SEC("raw_tp/sys_enter")
int enter_fdatasync(struct bpf_raw_tracepoint_args *ctx) { return fd_enter(EV_FSYNC, ARG(0), 0, 0, 0); }

SEC("raw_tp/sys_enter")
int enter_sync_file_range(struct bpf_raw_tracepoint_args *ctx)
{
	if (!(ARG(3) & SYNC_FILE_RANGE_WAIT_AFTER))
		return 0;
	return fd_enter(EV_FSYNC, ARG(0), ARG(1), ARG(2), 0);
}

SEC("raw_tp/sys_enter")
int enter_syncfs(struct bpf_raw_tracepoint_args *ctx) { return fd_enter(EV_SYNCFS, ARG(0), 0, 0, 0); }

SEC("raw_tp/sys_enter")
int enter_sync(struct bpf_raw_tracepoint_args *ctx)
{
	if (is_self())
		return 0;
	struct ev_meta *m = meta_start(EV_SYNC);
	if (!m)
		return 0;
	return meta_save(m);
}

SEC("raw_tp/sys_enter")
int enter_msync(struct bpf_raw_tracepoint_args *ctx)
{
	if (is_self())
		return 0;
	struct ev_meta *m = meta_start(EV_MSYNC);
	if (!m)
		return 0;
	return meta_save(m);
}

/* mmap(addr, len, prot, flags, fd, off): stores through it are invisible. */
SEC("raw_tp/sys_enter")
int enter_mmap(struct bpf_raw_tracepoint_args *ctx)
{
	__u32 prot = ARG(2), fl = ARG(3);
	if (!(prot & PROT_WRITE) || (fl & MAP_SHARED_VALIDATE) == 0 || (fl & MAP_SHARED_VALIDATE) == 0x02)
		return 0;
	return fd_enter(EV_MMAP, ARG(4), 0, 0, 0);
}

SEC("raw_tp/sys_enter")
int enter_utimensat(struct bpf_raw_tracepoint_args *ctx)
{
	const char *p = (void *)ARG(1);
	int r;
	if (!p)
		r = fd_enter(EV_UTIMES, ARG(0), 0, 0, 0);
	else
		r = path1_enter(EV_UTIMES, ARG(0), p, ARG(3), 0);
	__u64 id = bpf_get_current_pid_tgid();
	struct ev_meta *m = bpf_map_lookup_elem(&inflight_m, &id);
	if (!m || m->h.type != EV_UTIMES)
		return r;
	struct { __s64 sec, nsec; } ts[2] = {};
	if (ARG(2)) {
		bpf_probe_read_user(ts, sizeof(ts), (void *)ARG(2));
	} else {
		ts[0].nsec = ts[1].nsec = (1l << 30) - 1; /* UTIME_NOW */
	}
	m->a = ts[0].sec;
	m->b = ts[0].nsec;
	m->c = ts[1].sec;
	m->d = ts[1].nsec;
	return r;
}

SEC("raw_tp/sys_enter")
int enter_rename(struct bpf_raw_tracepoint_args *ctx) { return path2_enter(EV_RENAME, AT_FDCWD, (void *)ARG(0), AT_FDCWD, (void *)ARG(1), 0); }

SEC("raw_tp/sys_enter")
int enter_renameat(struct bpf_raw_tracepoint_args *ctx) { return path2_enter(EV_RENAME, ARG(0), (void *)ARG(1), ARG(2), (void *)ARG(3), 0); }

SEC("raw_tp/sys_enter")
int enter_renameat2(struct bpf_raw_tracepoint_args *ctx) { return path2_enter(EV_RENAME, ARG(0), (void *)ARG(1), ARG(2), (void *)ARG(3), ARG(4)); }

SEC("raw_tp/sys_enter")
int enter_link(struct bpf_raw_tracepoint_args *ctx) { return path2_enter(EV_LINK, AT_FDCWD, (void *)ARG(0), AT_FDCWD, (void *)ARG(1), 0); }

SEC("raw_tp/sys_enter")
int enter_linkat(struct bpf_raw_tracepoint_args *ctx) { return path2_enter(EV_LINK, ARG(0), (void *)ARG(1), ARG(2), (void *)ARG(3), ARG(4)); }

SEC("raw_tp/sys_enter")
int enter_symlink(struct bpf_raw_tracepoint_args *ctx) { return path2_enter(EV_SYMLINK, AT_FDCWD, (void *)ARG(0), AT_FDCWD, (void *)ARG(1), 0); }

SEC("raw_tp/sys_enter")
int enter_symlinkat(struct bpf_raw_tracepoint_args *ctx) { return path2_enter(EV_SYMLINK, AT_FDCWD, (void *)ARG(0), ARG(1), (void *)ARG(2), 0); }

#define META_EXIT(name, mm)                                     \
	SEC("raw_tp/sys_exit")              \
	int exit_##name(struct bpf_raw_tracepoint_args *ctx)   \
	{                                                       \
		return meta_exit((long)ctx->args[1], mm);                 \
	}

META_EXIT(mkdir, 0)
META_EXIT(mkdirat, 0)
META_EXIT(rmdir, 0)
META_EXIT(unlink, 0)
META_EXIT(unlinkat, 0)
META_EXIT(truncate, 0)
META_EXIT(chmod, 0)
META_EXIT(fchmodat, 0)
META_EXIT(fchmodat2, 0)
META_EXIT(chown, 0)
META_EXIT(lchown, 0)
META_EXIT(fchownat, 0)
META_EXIT(fchown, 0)
META_EXIT(fchmod, 0)
META_EXIT(ftruncate, 0)
META_EXIT(fallocate, 0)
META_EXIT(fsync, 0)
META_EXIT(fdatasync, 0)
META_EXIT(sync_file_range, 0)
META_EXIT(syncfs, 0)
META_EXIT(sync, 0)
META_EXIT(msync, 0)
META_EXIT(mmap, 1)
META_EXIT(utimensat, 0)
META_EXIT(rename, 0)
META_EXIT(renameat, 0)
META_EXIT(renameat2, 0)
META_EXIT(link, 0)
META_EXIT(linkat, 0)
META_EXIT(symlink, 0)
META_EXIT(symlinkat, 0)

/*
 * ---- io_uring ----
 * Its requests change files from the kernel without a syscall of their own,
 * so they are judged on io_uring's tracepoints: a write or size change to a
 * protected file becomes a dirty range that user space reads back once the
 * request completed; a barrier becomes EV_FSYNC; a change of names, whose
 * path is gone by completion, is judged at submission and, once it
 * succeeded, counted for a walk of the roots' names (of their contents too
 * after an O_TRUNC open).
 */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, __u64); /* struct io_kiocb * */
	__type(value, __u32); /* the counter its success bumps */
} uring_names SEC(".maps");

/*
 * Requests in flight that io_uring_complete would judge, by ring and
 * user_data: a completion that finds the completion queue full is told by
 * io_uring_cqe_overflow instead, which names only those. n counts the
 * requests in flight under a key; req is the one request when n is 1 and
 * no other shared the key since, else 0 and the overflow cannot be told
 * apart. Requests whose success posts no completion (IOSQE_CQE_SKIP_SUCCESS)
 * are never entered: nothing would take them out.
 */
struct uring_key {
	__u64 ring;
	__u64 user_data;
};

struct uring_flight {
	__u64 req;
	__u64 n;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, struct uring_key);
	__type(value, struct uring_flight);
} uring_inflight SEC(".maps");

static __always_inline void uring_track(struct io_kiocb *req, __u64 key)
{
	struct uring_key k = { .ring = (__u64)req->ctx, .user_data = req->cqe.user_data };
	struct uring_flight v = { .req = key, .n = 1 };

	if (!bpf_map_update_elem(&uring_inflight, &k, &v, BPF_NOEXIST))
		return;
	struct uring_flight *f = bpf_map_lookup_elem(&uring_inflight, &k);
	if (f) {
		f->req = 0;
		__sync_fetch_and_add(&f->n, 1);
		return;
	}
	/* Not tracked: if it overflows, nobody can tell what it changed. */
	count(CNT_URING_LOST);
}

/* A request under (ring, user_data) left flight. It reports whether one
 * was tracked there, and sets *req to the request an overflow of it may be
 * judged by, 0 if none can be. */
static __always_inline int uring_landed(__u64 ring, __u64 user_data, __u64 *req)
{
	struct uring_key k = { .ring = ring, .user_data = user_data };
	struct uring_flight *f = bpf_map_lookup_elem(&uring_inflight, &k);

	if (!f)
		return 0;
	*req = f->req;
	if (__sync_fetch_and_add(&f->n, -1) == 1)
		bpf_map_delete_elem(&uring_inflight, &k);
	return 1;
}

/*
 * The process that owns a request: a completion may be posted from another
 * task's context (an interrupt), so current says nothing about it.
 */
static __always_inline __u32 uring_tgid(struct io_kiocb *req)
{
	struct io_uring_task *t = req->tctx;

	if (!t || !t->task)
		return 0;
	return t->task->tgid;
}

/* Whether a path of a request may lie beneath a protected root. */
static __always_inline int uring_path(int dfd, struct filename *fn)
{
	__u32 zero = 0;
	struct ev_meta *m;

	if (!fn)
		return 0;
	m = bpf_map_lookup_elem(&scratch, &zero);
	if (!m || bpf_probe_read_kernel_str(m->path1, PATH_LEN, fn->name) <= 0)
		return 0;
	if (m->path1[0] == '/')
		return match_abs(m->path1) >= 0;
	struct dentry *d = base_dentry(dfd);
	if (!d || !d->d_inode)
		return 0;
	return dev_protected(d->d_inode->i_sb->s_dev) >= 0;
}

/*
 * A range written outside a syscall of the writer's own (io_uring, Linux
 * AIO), reported once the write completed: user space reads the bytes back.
 */
static __always_inline void emit_dirty(__u64 ino, __u32 root, __u32 tgid, __s64 lo, __s64 hi, __u32 flags, __u32 fflags)
{
	struct ev_write *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);

	if (!e) {
		note_loss(ino, root, lo, hi);
		return;
	}
	e->h.ino = ino;
	e->h.type = EV_WRITE;
	e->h.root = root;
	e->h.tgid = tgid;
	e->h.flags = EVF_DIRTY | EVF_LAST | flags;
	e->off = lo;
	e->lo = lo;
	e->hi = hi;
	e->len = 0;
	e->fflags = fflags;
	stamp(&e->h);
	/* The bytes are read back after completion: the request's whole life
	 * lies before that, so its span is the completion instant. */
	e->h.enter_ns = e->h.exit_ns;
	bpf_ringbuf_submit(e, rb_flags(sizeof(*e)));
}

/*
 * An event on a file outside a syscall of the writer's own: a barrier
 * completed (EV_FSYNC), or writes that will complete unseen (EV_MMAP: the
 * file is read back at its barriers, as one mapped shared is).
 */
static __always_inline void emit_ino_event(__u64 ino, __u32 root, __u32 tgid, __u32 type)
{
	struct ev_meta *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);

	if (!e) {
		count(CNT_RING_FULL);
		count(CNT_META_LOST);
		return;
	}
	__builtin_memset(e, 0, __builtin_offsetof(struct ev_meta, path1));
	e->h.ino = ino;
	e->h.type = type;
	e->h.root = root;
	e->h.tgid = tgid;
	e->h.flags = EVF_FD;
	e->root2 = NO_ROOT;
	e->path1[0] = 0;
	e->path2[0] = 0;
	stamp(&e->h);
	e->h.enter_ns = e->h.exit_ns;
	bpf_ringbuf_submit(e, rb_flags(sizeof(*e)));
}

/*
 * A write-like request whose success posts no completion
 * (IOSQE_CQE_SKIP_SUCCESS) completes unseen: its file is read back at its
 * barriers and at the end, as one mapped shared is, and a barrier counts
 * from its submission. A fixed file cannot be told from here.
 */
static __always_inline void uring_blind(struct io_kiocb *req)
{
	if (req->flags & REQ_F_FIXED_FILE) {
		count(CNT_URING_LOST);
		return;
	}
	struct file *f = fd_file(req->cqe.fd);
	if (!f || !f->f_inode || (f->f_inode->i_mode & S_IFMT) != S_IFREG)
		return;
	int root = file_root(f);
	if (root < 0)
		return;
	__u8 op = req->opcode;
	__u32 type = (op == IORING_OP_FSYNC || op == IORING_OP_SYNC_FILE_RANGE) ? EV_FSYNC : EV_MMAP;
	emit_ino_event(f->f_inode->i_ino, root, uring_tgid(req), type);
}

SEC("raw_tp/io_uring_submit_req")
int uring_submit(struct bpf_raw_tracepoint_args *ctx)
{
	__u64 key = ctx->args[0];
	struct io_kiocb *req = kcast(key, struct io_kiocb);
	int skip = (req->flags & REQ_F_CQE_SKIP) != 0;
	__u32 cnt = CNT_URING_NAMES;
	int hit;

	if (uring_tgid(req) == self_tgid)
		return 0;
	switch (req->opcode) {
	case IORING_OP_WRITE:
	case IORING_OP_WRITEV:
	case IORING_OP_WRITE_FIXED:
	case IORING_OP_WRITEV_FIXED:
	case IORING_OP_FALLOCATE:
	case IORING_OP_FTRUNCATE:
	case IORING_OP_SPLICE:
	case IORING_OP_FSYNC:
	case IORING_OP_SYNC_FILE_RANGE:
		if (skip)
			uring_blind(req);
		else
			uring_track(req, key);
		return 0;
	case IORING_OP_OPENAT:
	case IORING_OP_OPENAT2: {
		struct io_open *o = kcast(key, struct io_open);
		hit = (o->how.flags & (O_CREAT | O_TRUNC)) && uring_path(o->dfd, o->filename);
		if (o->how.flags & O_TRUNC)
			cnt = CNT_URING_TRUNC;
		break;
	}
	case IORING_OP_UNLINKAT: {
		struct io_unlink *u = kcast(key, struct io_unlink);
		hit = uring_path(u->dfd, u->filename);
		break;
	}
	case IORING_OP_MKDIRAT: {
		struct io_mkdir *d = kcast(key, struct io_mkdir);
		hit = uring_path(d->dfd, d->filename);
		break;
	}
	case IORING_OP_RENAMEAT: {
		struct io_rename *r = kcast(key, struct io_rename);
		hit = uring_path(r->old_dfd, r->oldpath) || uring_path(r->new_dfd, r->newpath);
		break;
	}
	case IORING_OP_LINKAT:
	case IORING_OP_SYMLINKAT: {
		/* symlinkat keeps its target in oldpath: only newpath is a name */
		struct io_link *l = kcast(key, struct io_link);
		hit = uring_path(l->new_dfd, l->newpath) ||
		      (req->opcode == IORING_OP_LINKAT && uring_path(l->old_dfd, l->oldpath));
		break;
	}
	default:
		return 0;
	}
	if (!hit)
		return 0;
	if (skip || bpf_map_update_elem(&uring_names, &key, &cnt, BPF_ANY)) {
		/* Its completion is not waited for: the walk may run first. */
		count(cnt);
		return 0;
	}
	uring_track(req, key);
	return 0;
}

static __always_inline void uring_dirty(struct file *f, __u32 tgid, int root, __s64 lo, __s64 hi, __u32 flags)
{
	emit_dirty(f->f_inode->i_ino, root, tgid, lo, hi, flags, f->f_flags);
}

/* A request completed with res, its completion posted or overflowed. */
static __always_inline int uring_done(__u64 key, __s32 res)
{
	struct io_kiocb *req = kcast(key, struct io_kiocb);
	__u8 op = req->opcode;
	__u32 tgid = uring_tgid(req);

	if (tgid == self_tgid)
		return 0;
	switch (op) {
	case IORING_OP_OPENAT:
	case IORING_OP_OPENAT2:
	case IORING_OP_UNLINKAT:
	case IORING_OP_MKDIRAT:
	case IORING_OP_RENAMEAT:
	case IORING_OP_LINKAT:
	case IORING_OP_SYMLINKAT:
	{
		__u32 *c = bpf_map_lookup_elem(&uring_names, &key);
		if (c) {
			__u32 cnt = *c;
			bpf_map_delete_elem(&uring_names, &key);
			if (res >= 0)
				count(cnt);
		}
		return 0;
	}
	case IORING_OP_WRITE:
	case IORING_OP_WRITEV:
	case IORING_OP_WRITE_FIXED:
	case IORING_OP_WRITEV_FIXED:
	case IORING_OP_FALLOCATE:
	case IORING_OP_FTRUNCATE:
	case IORING_OP_SPLICE:
	case IORING_OP_FSYNC:
	case IORING_OP_SYNC_FILE_RANGE:
		break;
	default:
		return 0;
	}
	if (res < 0)
		return 0;
	struct file *f = req->file;
	if (!f || !f->f_inode || (f->f_inode->i_mode & S_IFMT) != S_IFREG)
		return 0;
	int root = file_root(f);
	if (root < 0)
		return 0;
	switch (op) {
	case IORING_OP_FSYNC:
	case IORING_OP_SYNC_FILE_RANGE:
		emit_ino_event(f->f_inode->i_ino, root, tgid, EV_FSYNC);
		return 0;
	case IORING_OP_FALLOCATE: {
		struct io_sync *s = kcast(key, struct io_sync);
		uring_dirty(f, tgid, root, s->off, TO_EOF, 0);
		return 0;
	}
	case IORING_OP_FTRUNCATE: {
		struct io_ftrunc *t = kcast(key, struct io_ftrunc);
		uring_dirty(f, tgid, root, t->len, TO_EOF, 0);
		return 0;
	}
	case IORING_OP_SPLICE:
		uring_dirty(f, tgid, root, 0, TO_EOF, 0);
		return 0;
	}
	if (res == 0)
		return 0;
	/* ki_pos has moved past the bytes written, appends included. */
	struct io_rw *rw = kcast(key, struct io_rw);
	__s64 end = rw->kiocb.ki_pos;
	__u32 flags = (rw->kiocb.ki_flags & (RWF_DSYNC | RWF_SYNC)) ? EVF_SYNC : 0; /* IOCB_* are RWF_* */
	if (end < res)
		uring_dirty(f, tgid, root, 0, TO_EOF, flags);
	else
		uring_dirty(f, tgid, root, end - res, end, flags);
	return 0;
}

SEC("raw_tp/io_uring_complete")
int uring_complete(struct bpf_raw_tracepoint_args *ctx)
{
	__u64 key = ctx->args[1];
	struct io_kiocb *req = kcast(key, struct io_kiocb);
	struct io_uring_cqe *cqe = kcast(ctx->args[2], struct io_uring_cqe);

	__u64 tracked;

	uring_landed((__u64)req->ctx, cqe->user_data, &tracked);
	return uring_done(key, cqe->res);
}

/*
 * io_uring_cqe_overflow(ring, user_data, res, cflags, ocqe): the completion
 * queue was full, so the kernel keeps the completion for later and
 * io_uring_complete does not see it. The request is still alive here.
 */
SEC("raw_tp/io_uring_cqe_overflow")
int uring_overflow(struct bpf_raw_tracepoint_args *ctx)
{
	__u64 ring = ctx->args[0], user_data = ctx->args[1], key = 0;

	if (!uring_landed(ring, user_data, &key))
		return 0; /* not a request capture judges */
	struct io_kiocb *req = kcast(key, struct io_kiocb);
	if (!key || (__u64)req->ctx != ring || req->cqe.user_data != user_data) {
		count(CNT_URING_LOST);
		return 0;
	}
	return uring_done(key, (__s32)ctx->args[2]);
}

/* ---- Linux AIO (io_submit) ----
 *
 * A buffered AIO write is carried out within io_submit: its range is read
 * back from io_submit's exit. A direct one (O_DIRECT) completes later, in
 * the block layer: its range waits in aio_pending, keyed by the process and
 * its iocb's address, for the io_event that io_getevents hands back, as do
 * AIO fsyncs, which run on a workqueue. Completions a program reaps from
 * the AIO ring in its own memory, without io_getevents, are not seen.
 */
#define IOCB_CMD_PWRITE 1
#define IOCB_CMD_FSYNC 2
#define IOCB_CMD_FDSYNC 3
#define IOCB_CMD_PWRITEV 8
#define O_DIRECT 040000
#define AIO_BATCH 64 /* iocbs or events looked at per call */
#define AIO_IOVS 8   /* iovecs summed per PWRITEV; past it, to EOF */

struct aio_key {
	__u64 iocb; /* its address in the submitter */
	__u32 tgid;
	__u32 pad;
};

struct aio_val {
	__u64 ino;
	__s64 lo; /* -1: an append, where is not known */
	__u32 root;
	__u32 fsync;
	__u32 fflags;
	__u32 pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, struct aio_key);
	__type(value, struct aio_val);
} aio_pending SEC(".maps");

struct aio_walk {
	__u64 list; /* iocb pointers (io_submit) or io_events (io_getevents) */
	__u32 tgid;
};

static __always_inline __s64 aio_len(struct iocb *cb)
{
	if (cb->aio_lio_opcode == IOCB_CMD_PWRITE)
		return cb->aio_nbytes;
	__s64 n = 0;
	for (int i = 0; i < AIO_IOVS; i++) {
		struct iovec v;
		if (i == cb->aio_nbytes)
			return n;
		if (bpf_probe_read_user(&v, sizeof(v), (void *)(cb->aio_buf + i * sizeof(v))))
			return -1;
		n += v.iov_len;
	}
	return -1;
}

static long aio_submitted(__u32 i, void *arg)
{
	struct aio_walk *w = arg;
	__u64 ptr;
	struct iocb cb;

	if (bpf_probe_read_user(&ptr, sizeof(ptr), (void *)(w->list + i * sizeof(ptr))) ||
	    bpf_probe_read_user(&cb, sizeof(cb), (void *)ptr))
		return 0;
	int fsync = cb.aio_lio_opcode == IOCB_CMD_FSYNC || cb.aio_lio_opcode == IOCB_CMD_FDSYNC;
	if (!fsync && cb.aio_lio_opcode != IOCB_CMD_PWRITE && cb.aio_lio_opcode != IOCB_CMD_PWRITEV)
		return 0;
	struct file *f = fd_file(cb.aio_fildes);
	if (!f)
		return 0;
	int root = file_root(f);
	if (root < 0)
		return 0;
	__s64 lo = cb.aio_offset, hi = TO_EOF, n = 0;
	if (!fsync) {
		n = aio_len(&cb);
		if ((f->f_flags & O_APPEND) || (cb.aio_rw_flags & RWF_APPEND))
			lo = -1;
		else if (n >= 0)
			hi = lo + n;
	}
	if (!fsync && !(f->f_flags & O_DIRECT)) {
		emit_dirty(f->f_inode->i_ino, root, w->tgid, lo < 0 ? 0 : lo, hi, 0, f->f_flags);
		return 0;
	}
	struct aio_key k = { .iocb = ptr, .tgid = w->tgid };
	struct aio_val v = { .ino = f->f_inode->i_ino, .lo = lo, .root = root, .fsync = fsync, .fflags = f->f_flags };
	bpf_map_update_elem(&aio_pending, &k, &v, BPF_ANY);
	return 0;
}

static long aio_reaped(__u32 i, void *arg)
{
	struct aio_walk *w = arg;
	struct io_event ev;

	if (bpf_probe_read_user(&ev, sizeof(ev), (void *)(w->list + i * sizeof(ev))))
		return 0;
	struct aio_key k = { .iocb = ev.obj, .tgid = w->tgid };
	struct aio_val *v = bpf_map_lookup_elem(&aio_pending, &k);
	if (!v)
		return 0;
	if (v->fsync)
		emit_ino_event(v->ino, v->root, w->tgid, EV_FSYNC);
	else if (ev.res > 0)
		emit_dirty(v->ino, v->root, w->tgid, v->lo < 0 ? 0 : v->lo, v->lo < 0 ? TO_EOF : v->lo + ev.res, 0, v->fflags);
	bpf_map_delete_elem(&aio_pending, &k);
	return 0;
}

static __always_inline int aio_exit(struct bpf_raw_tracepoint_args *ctx, int arg, void *fn)
{
	long ret = (long)ctx->args[1];

	if (ret <= 0)
		return 0;
	if (ret > AIO_BATCH) {
		/* The ones past the batch go unseen: a walk reads back what changed. */
		count(CNT_AIO_MANY);
		ret = AIO_BATCH;
	}
	struct aio_walk w = { .list = sysarg(ctx, arg), .tgid = bpf_get_current_pid_tgid() >> 32 };
	bpf_loop(ret, fn, &w, 0);
	return 0;
}

SEC("raw_tp/sys_exit")
int exit_io_submit(struct bpf_raw_tracepoint_args *ctx) { return aio_exit(ctx, 2, aio_submitted); }

SEC("raw_tp/sys_exit")
int exit_io_getevents(struct bpf_raw_tracepoint_args *ctx) { return aio_exit(ctx, 3, aio_reaped); }

SEC("raw_tp/sys_exit")
int exit_io_pgetevents(struct bpf_raw_tracepoint_args *ctx) { return aio_exit(ctx, 3, aio_reaped); }

SEC("raw_tp/sys_enter")
int dispatch_enter(struct bpf_raw_tracepoint_args *ctx)
{
	if ((bpf_get_current_pid_tgid() >> 32) == self_tgid)
		return 0;
	bpf_tail_call(ctx, &enter_calls, (__u32)ctx->args[1]);
	return 0;
}

SEC("raw_tp/sys_exit")
int dispatch_exit(struct bpf_raw_tracepoint_args *ctx)
{
	struct pt_regs *regs = kcast(ctx->args[0], struct pt_regs);

	if ((bpf_get_current_pid_tgid() >> 32) == self_tgid)
		return 0;
	bpf_tail_call(ctx, &exit_calls, (__u32)regs->orig_ax);
	return 0;
}
