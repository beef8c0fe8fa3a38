package replica

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// state is what a replica must remember across a crash besides its spool:
// whose data it holds and how far it has applied it.
type state struct {
	Epoch   uint64 `json:"epoch"`   // the master incarnation the data comes from
	Applied uint64 `json:"applied"` // every record up to this one is on disk in the root
	// Exchange is set before a rename that swaps two names: applying one
	// twice swaps them back, so after a crash the replica must tell
	// whether it happened.
	Exchange *exchange `json:"exchange,omitempty"`
}

// exchange is the swap of Path and another name at Seq; Ino is the inode
// number the other name held before it, which Path holds after.
type exchange struct {
	Seq  uint64 `json:"seq"`
	Path string `json:"path"`
	Ino  uint64 `json:"ino"`
}

// settle counts an exchange that happened before a crash as applied, so that
// it is not applied again.
func (st *state) settle(root string) bool {
	x := st.Exchange
	if x == nil || st.Applied != x.Seq-1 || x.Ino == 0 {
		return false
	}
	var fi unix.Stat_t
	if unix.Lstat(filepath.Join(root, x.Path), &fi) != nil || fi.Ino != x.Ino {
		return false
	}
	st.Applied = x.Seq
	return true
}

const stateFile = "state.json"

func loadState(dir string) (state, error) {
	var st state
	b, err := os.ReadFile(filepath.Join(dir, stateFile))
	if errors.Is(err, os.ErrNotExist) {
		return st, nil
	}
	if err != nil {
		return st, fmt.Errorf("replica: read state: %w", err)
	}
	if err := json.Unmarshal(b, &st); err != nil {
		return st, fmt.Errorf("replica: state file %s: %w", filepath.Join(dir, stateFile), err)
	}
	return st, nil
}

// save replaces the state file atomically and durably: a crash leaves the
// old one or the new one.
func (st state) save(dir string) error {
	b, err := json.Marshal(st)
	if err != nil {
		return err
	}
	tmp := filepath.Join(dir, stateFile+".tmp")
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("replica: save state: %w", err)
	}
	_, err = f.Write(b)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, filepath.Join(dir, stateFile))
	}
	if err == nil {
		err = syncDir(dir)
	}
	if err != nil {
		return fmt.Errorf("replica: save state: %w", err)
	}
	return nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
