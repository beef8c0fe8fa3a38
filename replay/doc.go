// Package replay is the replica applier: it applies journal records strictly
// in sequence order beneath a target root.
//
// Every path in a record is hostile input. Paths are validated before any
// system call, and every name is resolved with openat2(2) and
// RESOLVE_BENEATH relative to the root, so nothing the applier does can reach
// outside it, not even through a symlink planted in the tree. A rejected
// record latches the Applier: nothing after the last good record is applied.
//
// Replay is tolerant so that it is idempotent: after a crash the replica
// resumes from its last durable sequence number and records already applied
// arrive again, so a record whose effect is already present, or whose subject
// a later record has removed, is a counted no-op rather than an error.
package replay
