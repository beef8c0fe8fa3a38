package resync

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"io"

	"github.com/vmihailenco/msgpack/v5"
)

// Wire format of a manifest, drawn in doc.go.
const (
	manifestMagic   = "WCMF"
	manifestVersion = 1
	// partEntries bounds the entries of one part, and maxPartBody its size
	// (a part of large files carries their hashes).
	partEntries = 4096
	maxPartBody = 8 << 20
	// partHashes bounds the hashes one entry of a part carries; a file
	// with more continues in entries that carry only hashes.
	partHashes = 1 << 18
	// MaxBlockSize bounds the block size a manifest may declare.
	MaxBlockSize = 64 << 20
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// wireEntry is an Entry as a manifest carries it.
type wireEntry struct {
	Path   string `msgpack:"p"`
	Kind   Kind   `msgpack:"k"`
	Mode   uint32 `msgpack:"m"`
	UID    uint32 `msgpack:"u"`
	GID    uint32 `msgpack:"g"`
	Size   int64  `msgpack:"s"`
	MTime  int64  `msgpack:"t"`
	Target string `msgpack:"l,omitempty"`
	Nlink  uint32 `msgpack:"n"`
	Ino    uint64 `msgpack:"i"`           // the file's identity on its side: equal for hard links
	Hashes []byte `msgpack:"h,omitempty"` // HashSize bytes per block
	More   bool   `msgpack:"c,omitempty"` // the next entry continues this one's hashes
}

// part is one length- and CRC-framed piece of a manifest.
type part struct {
	BlockSize int         `msgpack:"b"`
	Entries   []wireEntry `msgpack:"e"`
	Last      bool        `msgpack:"z"`
}

// EncodeParts writes m as parts, each framed with its length and CRC, and
// calls emit with each, saying which is the last; the parts of a manifest
// may travel one by one.
func (m *Manifest) EncodeParts(emit func(part []byte, last bool) error) error {
	p := part{BlockSize: m.BlockSize}
	size := 0
	flush := func(last bool) error {
		p.Last = last
		body, err := msgpack.Marshal(&p)
		if err != nil {
			return fmt.Errorf("resync: encode manifest: %w", err)
		}
		b := make([]byte, 8, 8+len(body))
		binary.LittleEndian.PutUint32(b, uint32(len(body)))
		binary.LittleEndian.PutUint32(b[4:], crc32.Checksum(body, castagnoli))
		if err := emit(append(b, body...), last); err != nil {
			return err
		}
		p.Entries, size = p.Entries[:0], 0
		return nil
	}
	add := func(w wireEntry) error {
		if len(p.Entries) == partEntries || size+len(w.Hashes)+len(w.Path) > maxPartBody/2 && len(p.Entries) > 0 {
			if err := flush(false); err != nil {
				return err
			}
		}
		p.Entries = append(p.Entries, w)
		size += len(w.Hashes) + len(w.Path) + 64
		return nil
	}
	for i := range m.Entries {
		e := &m.Entries[i]
		w := wireEntry{Path: e.Path, Kind: e.Kind, Mode: e.Mode, UID: e.UID, GID: e.GID, Size: e.Size,
			MTime: e.MTime, Target: e.Target, Nlink: e.Nlink, Ino: e.Ino}
		hs := m.Hashes[i]
		for {
			n := min(len(hs), partHashes)
			if n > 0 {
				w.Hashes = make([]byte, 0, n*HashSize)
				for _, h := range hs[:n] {
					w.Hashes = append(w.Hashes, h[:]...)
				}
			}
			hs = hs[n:]
			w.More = len(hs) > 0
			if err := add(w); err != nil {
				return err
			}
			if !w.More {
				break
			}
			w = wireEntry{Path: e.Path}
		}
	}
	return flush(true)
}

// WriteTo writes m as a manifest file: the magic and version, then its
// parts.
func (m *Manifest) WriteTo(w io.Writer) (int64, error) {
	n, err := w.Write([]byte{manifestMagic[0], manifestMagic[1], manifestMagic[2], manifestMagic[3], manifestVersion})
	total := int64(n)
	if err != nil {
		return total, err
	}
	err = m.EncodeParts(func(b []byte, _ bool) error {
		n, err := w.Write(b)
		total += int64(n)
		return err
	})
	return total, err
}
