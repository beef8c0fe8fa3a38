// Package resync brings a replica to its master's state and checks that it
// is there: file-level sync (size and time, then whole files), block-level
// sync (per-block hashes compared, only differing blocks sent), volume-level
// sync (a snapshot's used blocks to an image or device), offline export and
// import with a manifest, and verify.
//
// # Block hashes
//
// A block is BlockSize bytes of a file from offset 0 (the last may be
// shorter); its hash is XXH3-128 in its canonical big-endian form, 16
// bytes. Two sides compare hashes block by block.
//
// # Manifest
//
// A manifest is a tree as one side holds it: every entry, sorted by path
// component by component, with the block hashes of every file. A manifest
// file (offline export) is:
//
//	+------+---------+--------+--------+-----
//	| WCMF | version | part 0 | part 1 | ...   the last part says so
//	+------+---------+--------+--------+-----
//	  4 B     1 B
//
// and each part, also the unit a replica sends a master over the stream:
//
//	+------------+------------+--------------------------+
//	| length u32 | CRC-32C u32| body: msgpack part        |
//	+------------+------------+--------------------------+
//	  little endian; the CRC (Castagnoli) covers the body
//
// A part's body is a map {b: block size, e: entries, z: last}. An entry is
// {p: path, k: kind (1 file, 2 directory, 3 symlink), m: mode bits, u, g:
// owner, s: size, t: mtime in ns, l: symlink target, n: link count, i:
// inode (equal for hard links on the side that wrote it), h: hashes
// concatenated, c: the next entry continues these hashes}. A continuing
// entry carries only p (the same path) and h.
//
// Wire format: the magic, manifestVersion, the framing, the keys above,
// the Kind values, HashSize and the hash itself. Limits a reader enforces
// (maxPartBody, MaxBlockSize) bound what a peer can make it allocate.
//
// # Checkpoint
//
// A sync keeps a checkpoint file (CheckpointName) at the target's root: one
// JSON object per completed file. A line that does not parse ends it.
package resync
