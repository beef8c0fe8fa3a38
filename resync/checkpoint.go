package resync

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"sync"
)

// checkpoint records, at the target's root, each file a sync completed and
// made durable: what the source file was (size, modification time) and
// which target file received it. A sync killed and started again skips
// files whose record still matches both sides. A torn last line is
// ignored: at worst one file is compared again.
type checkpoint struct {
	root *os.Root
	mu   sync.Mutex
	f    *os.File
	recs map[string]ckRecord
}

// ckRecord is one line of the checkpoint, JSON.
type ckRecord struct {
	Path  string `json:"p"`
	Size  int64  `json:"s"`
	MTime int64  `json:"m"`
	Ino   uint64 `json:"i"`
}

func openCheckpoint(root *os.Root) (*checkpoint, error) {
	c := &checkpoint{root: root}
	b, err := root.ReadFile(CheckpointName)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("resync: read checkpoint %s: %w", CheckpointName, err)
	}
	c.recs = parseCheckpoint(b)
	c.f, err = root.OpenFile(CheckpointName, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("resync: open checkpoint %s: %w", CheckpointName, err)
	}
	return c, nil
}

// parseCheckpoint reads the records up to the first line that is not one.
func parseCheckpoint(b []byte) map[string]ckRecord {
	done := map[string]ckRecord{}
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(nil, 1<<16)
	for sc.Scan() {
		var r ckRecord
		if json.Unmarshal(sc.Bytes(), &r) != nil || r.Path == "" {
			break
		}
		done[r.Path] = r
	}
	return done
}

// done reports whether an earlier run completed src into the target's dst.
func (c *checkpoint) done(src, dst *Entry) bool {
	r, ok := c.recs[src.Path]
	return ok && r.Size == src.Size && r.MTime == src.MTime && r.Ino == dst.Ino
}

func (c *checkpoint) add(e *Entry, ino uint64) error {
	b, err := json.Marshal(ckRecord{Path: e.Path, Size: e.Size, MTime: e.MTime, Ino: ino})
	if err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, err := c.f.Write(append(b, '\n')); err != nil {
		return fmt.Errorf("resync: write checkpoint: %w", err)
	}
	return nil
}

func (c *checkpoint) close() { c.f.Close() }

// remove ends the checkpoint: the sync is complete.
func (c *checkpoint) remove() error {
	if err := c.root.Remove(CheckpointName); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("resync: remove checkpoint: %w", err)
	}
	return nil
}
