package resync

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// An offline export is a directory, for removable media: the tree under
// ExportData and its manifest in ExportManifest.
const (
	ExportData     = "data"
	ExportManifest = "manifest"
)

// ErrMismatch marks data that differs from its manifest.
var ErrMismatch = errors.New("resync: data does not match its manifest")

// Export copies source's tree into dir (creating it) and writes the
// manifest of what it copied, made from the copy.
func Export(ctx context.Context, source, dir string, o Options) (Stats, error) {
	o.fill()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return Stats{}, fmt.Errorf("resync: export to %s: %w", dir, err)
	}
	data := filepath.Join(dir, ExportData)
	if o.Method == MethodAuto {
		o.Method = MethodFile // the media's copy is compared by its manifest, not its times
	}
	st, err := Sync(ctx, source, data, o)
	if err != nil {
		return st, err
	}
	m, err := BuildManifest(ctx, data, o.BlockSize, nil, nil)
	if err != nil {
		return st, err
	}
	return st, writeManifest(filepath.Join(dir, ExportManifest), m)
}

// writeManifest writes m durably, whole or not at all.
func writeManifest(p string, m *Manifest) error {
	tmp := p + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("resync: manifest %s: %w", p, err)
	}
	_, err = m.WriteTo(f)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, p)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("resync: manifest %s: %w", p, err)
	}
	return nil
}

// Import checks an export in dir against its manifest, brings target to
// it, and checks target against the manifest too. Damaged or tampered media
// is refused before target is touched, naming the first file and block
// that differ.
func Import(ctx context.Context, dir, target string, o Options) (Stats, error) {
	o.fill()
	f, err := os.Open(filepath.Join(dir, ExportManifest))
	if err != nil {
		return Stats{}, fmt.Errorf("resync: import from %s: %w", dir, err)
	}
	m, err := ReadManifest(f)
	f.Close()
	if err != nil {
		return Stats{}, fmt.Errorf("resync: import from %s: %w", dir, err)
	}
	data := filepath.Join(dir, ExportData)
	if err := CheckManifest(ctx, data, m); err != nil {
		return Stats{}, fmt.Errorf("resync: import from %s refused: %w", dir, err)
	}
	o.BlockSize = m.BlockSize
	st, err := Sync(ctx, data, target, o)
	if err != nil {
		return st, err
	}
	if err := CheckManifest(ctx, target, m); err != nil {
		return st, fmt.Errorf("resync: after import into %s: %w", target, err)
	}
	return st, nil
}

// CheckManifest compares the tree at root with m and returns an error
// wrapping ErrMismatch that names the first entry that differs and, for a
// file's content, the first block.
func CheckManifest(ctx context.Context, root string, m *Manifest) error {
	have, err := BuildManifest(ctx, root, m.BlockSize, []string{CheckpointName}, nil)
	if err != nil {
		return err
	}
	i, j := 0, 0
	for i < len(m.Entries) || j < len(have.Entries) {
		var c int
		switch {
		case i == len(m.Entries):
			c = 1
		case j == len(have.Entries):
			c = -1
		default:
			c = comparePaths(m.Entries[i].Path, have.Entries[j].Path)
		}
		switch {
		case c < 0:
			return fmt.Errorf("%w: %s is missing from %s", ErrMismatch, m.Entries[i].Path, root)
		case c > 0:
			return fmt.Errorf("%w: %s in %s is not in the manifest", ErrMismatch, have.Entries[j].Path, root)
		}
		want, got := &m.Entries[i], &have.Entries[j]
		switch {
		case want.Kind != got.Kind:
			return fmt.Errorf("%w: %s is a %s, the manifest says %s", ErrMismatch, got.Path, got.Kind, want.Kind)
		case want.Kind == KindSymlink && want.Target != got.Target:
			return fmt.Errorf("%w: symlink %s points to %q, the manifest says %q", ErrMismatch, got.Path, got.Target, want.Target)
		case want.Kind == KindFile && want.Size != got.Size:
			return fmt.Errorf("%w: %s holds %d bytes, the manifest says %d", ErrMismatch, got.Path, got.Size, want.Size)
		case want.Kind != KindSymlink && want.Mode != got.Mode:
			return fmt.Errorf("%w: %s has mode %04o, the manifest says %04o", ErrMismatch, got.Path, got.Mode, want.Mode)
		case want.UID != got.UID || want.GID != got.GID:
			return fmt.Errorf("%w: %s is owned by %d:%d, the manifest says %d:%d", ErrMismatch, got.Path, got.UID, got.GID, want.UID, want.GID)
		}
		for k := range m.Hashes[i] {
			if m.Hashes[i][k] != have.Hashes[j][k] {
				off := int64(k) * int64(m.BlockSize)
				return fmt.Errorf("%w: %s differs at block %d (bytes %d to %d)", ErrMismatch, got.Path, k,
					off, min(off+int64(m.BlockSize), got.Size)-1)
			}
		}
		i, j = i+1, j+1
	}
	return nil
}
