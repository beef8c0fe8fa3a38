package resync

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/writecap/writecap/replay"
)

// ErrCorruptManifest marks a manifest that cannot be read.
var ErrCorruptManifest = errors.New("resync: corrupt manifest")

// IsCorruptManifest reports whether err is about a manifest's bytes.
func IsCorruptManifest(err error) bool { return errors.Is(err, ErrCorruptManifest) }

// ManifestDecoder rebuilds a manifest from its parts, checking each.
type ManifestDecoder struct {
	m    *Manifest
	n    int   // parts taken
	off  int64 // bytes taken
	more bool  // the last entry's hashes continue
	done bool
}

func corrupt(off int64, format string, args ...any) error {
	return fmt.Errorf("%w: at byte %d: %s", ErrCorruptManifest, off, fmt.Sprintf(format, args...))
}

// Part takes one framed part; it returns true once the last has come.
func (d *ManifestDecoder) Part(b []byte) (bool, error) {
	if d.done {
		return true, corrupt(d.off, "part after the last")
	}
	if len(b) < 8 {
		return false, corrupt(d.off, "part of %d bytes, shorter than its frame", len(b))
	}
	n, sum := binary.LittleEndian.Uint32(b), binary.LittleEndian.Uint32(b[4:])
	if int64(n) != int64(len(b)-8) || n > maxPartBody {
		return false, corrupt(d.off, "part says %d bytes, holds %d (at most %d)", n, len(b)-8, maxPartBody)
	}
	body := b[8:]
	if crc32.Checksum(body, castagnoli) != sum {
		return false, corrupt(d.off, "part %d fails its CRC", d.n)
	}
	var p part
	if err := msgpack.Unmarshal(body, &p); err != nil {
		return false, corrupt(d.off, "part %d: %v", d.n, err)
	}
	if err := d.take(&p); err != nil {
		return false, err
	}
	d.off += int64(len(b))
	d.n++
	d.done = p.Last
	return p.Last, nil
}

func (d *ManifestDecoder) take(p *part) error {
	if p.BlockSize <= 0 || p.BlockSize > MaxBlockSize {
		return corrupt(d.off, "block size %d", p.BlockSize)
	}
	if d.m == nil {
		d.m = &Manifest{BlockSize: p.BlockSize}
	} else if d.m.BlockSize != p.BlockSize {
		return corrupt(d.off, "block size %d after %d", p.BlockSize, d.m.BlockSize)
	}
	for i := range p.Entries {
		w := &p.Entries[i]
		if len(w.Hashes)%HashSize != 0 {
			return corrupt(d.off, "entry %q: %d bytes of hashes", w.Path, len(w.Hashes))
		}
		var hs []Hash
		if len(w.Hashes) > 0 {
			hs = make([]Hash, len(w.Hashes)/HashSize)
		}
		for k := range hs {
			copy(hs[k][:], w.Hashes[k*HashSize:])
		}
		if d.more {
			last := len(d.m.Entries) - 1
			if w.Path != d.m.Entries[last].Path || d.m.Entries[last].Kind != KindFile {
				return corrupt(d.off, "entry %q continues %q", w.Path, d.m.Entries[last].Path)
			}
			d.m.Hashes[last] = append(d.m.Hashes[last], hs...)
			d.more = w.More
			continue
		}
		if !replay.ValidPath(w.Path) {
			return corrupt(d.off, "entry path %q is not a clean relative path", w.Path)
		}
		if n := len(d.m.Entries); n > 0 && comparePaths(d.m.Entries[n-1].Path, w.Path) >= 0 {
			return corrupt(d.off, "entry %q out of order after %q", w.Path, d.m.Entries[n-1].Path)
		}
		if w.Kind < KindFile || w.Kind > KindSymlink || w.Size < 0 || (w.Kind != KindFile && len(hs) > 0) {
			return corrupt(d.off, "entry %q: kind %d, size %d, %d hashes", w.Path, w.Kind, w.Size, len(hs))
		}
		d.m.Entries = append(d.m.Entries, Entry{Path: w.Path, Kind: w.Kind, Mode: w.Mode & 0o7777, UID: w.UID,
			GID: w.GID, Size: w.Size, MTime: w.MTime, Target: w.Target, Nlink: w.Nlink, Ino: w.Ino})
		d.m.Hashes = append(d.m.Hashes, hs)
		d.more = w.More
	}
	return nil
}

// Manifest returns what was decoded, once the last part has come; every
// file then has exactly the hashes its size calls for.
func (d *ManifestDecoder) Manifest() (*Manifest, error) {
	if !d.done {
		return nil, corrupt(d.off, "manifest ends before its last part")
	}
	bs := int64(d.m.BlockSize)
	for i := range d.m.Entries {
		e := &d.m.Entries[i]
		if e.Kind == KindFile && int64(len(d.m.Hashes[i])) != (e.Size+bs-1)/bs {
			return nil, corrupt(d.off, "file %q of %d bytes has %d block hashes", e.Path, e.Size, len(d.m.Hashes[i]))
		}
	}
	return d.m, nil
}

// ReadManifest reads a manifest file written by WriteTo.
func ReadManifest(r io.Reader) (*Manifest, error) {
	br := bufio.NewReader(r)
	head := make([]byte, len(manifestMagic)+1)
	if _, err := io.ReadFull(br, head); err != nil {
		return nil, corrupt(0, "no header: %v", err)
	}
	if string(head[:4]) != manifestMagic {
		return nil, corrupt(0, "magic %q, want %q", head[:4], manifestMagic)
	}
	if head[4] != manifestVersion {
		return nil, corrupt(4, "version %d, want %d", head[4], manifestVersion)
	}
	d := &ManifestDecoder{off: int64(len(head))}
	for !d.done {
		frame := make([]byte, 8)
		if _, err := io.ReadFull(br, frame); err != nil {
			return nil, corrupt(d.off, "part %d: %v", d.n, err)
		}
		n := binary.LittleEndian.Uint32(frame)
		if n > maxPartBody {
			return nil, corrupt(d.off, "part says %d bytes, at most %d", n, maxPartBody)
		}
		frame = append(frame, make([]byte, n)...)
		if _, err := io.ReadFull(br, frame[8:]); err != nil {
			return nil, corrupt(d.off, "part %d: %v", d.n, err)
		}
		if _, err := d.Part(frame); err != nil {
			return nil, err
		}
	}
	return d.Manifest()
}
