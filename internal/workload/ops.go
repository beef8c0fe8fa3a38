//go:build linux

package workload

import "golang.org/x/sys/unix"

// op is one kind of operation. Weights are relative frequencies: data
// writes dominate as in real servers; barriers and syncfs are rare because
// they are slow.
type op struct {
	name    string
	weight  int
	outside bool // needs Options.Outside
	run     func(*worker) error
}

var ops = []op{
	// Writes: small random ranges, largely overlapping between threads.
	{name: "write", weight: 60, run: func(w *worker) error { return w.writeOp(callWrite, 0) }},
	{name: "pwrite64", weight: 60, run: func(w *worker) error { return w.writeOp(callPwrite, 0) }},
	{name: "writev", weight: 40, run: func(w *worker) error { return w.writeOp(callWritev, 0) }},
	{name: "pwritev", weight: 40, run: func(w *worker) error { return w.writeOp(callPwritev, 0) }},
	{name: "pwritev2", weight: 30, run: func(w *worker) error { return w.writeOp(callPwritev2, 0) }},
	{name: "pwritev2_curpos", weight: 15, run: func(w *worker) error { return w.writeOp(callPwritev2Cur, 0) }},
	{name: "pwritev2_dsync", weight: 5, run: func(w *worker) error { return w.writeOp(callPwritev2, unix.RWF_DSYNC) }},
	{name: "pwritev2_append", weight: 15, run: func(w *worker) error { return w.appendOp(0) }},
	{name: "pwritev2_append_dsync", weight: 3, run: func(w *worker) error { return w.appendOp(unix.RWF_DSYNC) }},
	{name: "o_append", weight: 30, run: (*worker).oAppend},
	{name: "write_large", weight: 8, run: (*worker).writeLarge},
	{name: "o_sync", weight: 4, run: func(w *worker) error { return w.syncWrite(unix.O_SYNC) }},
	{name: "o_dsync", weight: 4, run: func(w *worker) error { return w.syncWrite(unix.O_DSYNC) }},

	// Creating opens.
	{name: "open_creat", weight: 20, run: func(w *worker) error { return w.create(openOpen, false) }},
	{name: "open_trunc", weight: 8, run: func(w *worker) error { return w.create(openOpen, true) }},
	{name: "openat_creat", weight: 20, run: func(w *worker) error { return w.create(openOpenat, false) }},
	{name: "openat_trunc", weight: 8, run: func(w *worker) error { return w.create(openOpenat, true) }},
	{name: "openat2_creat", weight: 15, run: func(w *worker) error { return w.create(openOpenat2, false) }},
	{name: "openat2_trunc", weight: 6, run: func(w *worker) error { return w.create(openOpenat2, true) }},
	{name: "creat", weight: 8, run: func(w *worker) error { return w.create(openCreat, true) }},

	// Sizes.
	{name: "truncate_grow", weight: 10, run: func(w *worker) error { return w.truncate(false, true) }},
	{name: "truncate_shrink", weight: 10, run: func(w *worker) error { return w.truncate(false, false) }},
	{name: "ftruncate_grow", weight: 10, run: func(w *worker) error { return w.truncate(true, true) }},
	{name: "ftruncate_shrink", weight: 10, run: func(w *worker) error { return w.truncate(true, false) }},
	{name: "fallocate", weight: 8, run: func(w *worker) error { return w.fallocate(0) }},
	{name: "fallocate_keep_size", weight: 8, run: func(w *worker) error { return w.fallocate(unix.FALLOC_FL_KEEP_SIZE) }},
	{name: "fallocate_punch_hole", weight: 10, run: func(w *worker) error {
		return w.fallocate(unix.FALLOC_FL_PUNCH_HOLE | unix.FALLOC_FL_KEEP_SIZE)
	}},
	{name: "fallocate_zero_range", weight: 8, run: func(w *worker) error { return w.fallocate(unix.FALLOC_FL_ZERO_RANGE) }},
	{name: "fallocate_collapse_range", weight: 4, run: func(w *worker) error { return w.fallocate(unix.FALLOC_FL_COLLAPSE_RANGE) }},
	{name: "fallocate_insert_range", weight: 4, run: func(w *worker) error { return w.fallocate(unix.FALLOC_FL_INSERT_RANGE) }},

	// Names.
	{name: "rename", weight: 12, run: (*worker).rename},
	{name: "renameat", weight: 12, run: func(w *worker) error { return w.renameat2(0) }},
	{name: "renameat2_noreplace", weight: 10, run: func(w *worker) error { return w.renameat2(unix.RENAME_NOREPLACE) }},
	{name: "renameat2_exchange", weight: 10, run: func(w *worker) error { return w.renameat2(unix.RENAME_EXCHANGE) }},
	{name: "rename_over", weight: 10, run: (*worker).renameOver},
	{name: "rename_dir", weight: 10, run: (*worker).renameDir},
	{name: "unlink", weight: 20, run: (*worker).unlink},
	{name: "unlinkat", weight: 20, run: func(w *worker) error { return w.unlinkat(0) }},
	{name: "unlinkat_dir", weight: 10, run: func(w *worker) error { return w.unlinkat(unix.AT_REMOVEDIR) }},
	{name: "mkdir", weight: 15, run: (*worker).mkdir},
	{name: "mkdirat", weight: 15, run: (*worker).mkdirat},
	{name: "rmdir", weight: 10, run: (*worker).rmdir},
	{name: "link", weight: 12, run: (*worker).link},
	{name: "linkat", weight: 12, run: (*worker).linkat},
	{name: "symlink", weight: 8, run: (*worker).symlink},
	{name: "symlinkat", weight: 8, run: (*worker).symlinkat},
	{name: "symlink_dangling", weight: 8, run: (*worker).symlinkDangling},

	// Attributes.
	{name: "chmod", weight: 8, run: (*worker).chmod},
	{name: "fchmod", weight: 8, run: (*worker).fchmod},
	{name: "fchmodat", weight: 8, run: (*worker).fchmodat},
	{name: "chown", weight: 6, run: (*worker).chown},
	{name: "fchown", weight: 6, run: (*worker).fchown},
	{name: "lchown", weight: 6, run: (*worker).lchown},
	{name: "fchownat", weight: 6, run: (*worker).fchownat},
	{name: "utimensat_path", weight: 8, run: (*worker).utimensatPath},
	{name: "utimensat_fd", weight: 8, run: (*worker).utimensatFd},

	// Barriers.
	{name: "fsync", weight: 5, run: func(w *worker) error { return w.barrier(syncFsync) }},
	{name: "fdatasync", weight: 5, run: func(w *worker) error { return w.barrier(syncFdatasync) }},
	{name: "sync_file_range", weight: 5, run: func(w *worker) error { return w.barrier(syncFileRange) }},
	{name: "syncfs", weight: 2, run: func(w *worker) error { return w.barrier(syncFs) }},

	// Into and out of the tree.
	{name: "rename_into", weight: 5, outside: true, run: (*worker).renameInto},
	{name: "rename_out", weight: 5, outside: true, run: (*worker).renameOut},
	{name: "rename_dir_into", weight: 5, outside: true, run: (*worker).renameDirInto},
	{name: "rename_dir_out", weight: 3, outside: true, run: (*worker).renameDirOut},
}

func enabledOps(outside bool) []op {
	var table []op
	for _, o := range ops {
		if outside || !o.outside {
			table = append(table, o)
		}
	}
	return table
}
