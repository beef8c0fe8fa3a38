package master

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/writecap/writecap/journal"
)

// activity is the master's persistent activity record, as DRBD keeps one:
// before a batch goes to the spool, what it changes is appended here. A
// master killed with batches its replicas do not have durably learns on
// restart what to repair, instead of copying everything again.
//
// The file is a run of frames: u32 length, u32 CRC-32C of the body, body.
// The body is a kind byte and msgpack: first a header (which epochs the
// record can resume and from where, and where the directories were), then
// one entry per batch. A torn or corrupt frame ends the record: what was
// appended before it stands.
type activity struct {
	path string
	log  *slog.Logger
	f    *os.File
	w    *bufio.Writer

	hdr     activityHeader
	changes *journal.Changes // everything appended since the header
	last    uint64           // last stream seq appended
	size    int64
	compact int64 // rewrite past this size
}

type activityHeader struct {
	// Resumable maps an epoch to a seq after which all its changes are in
	// this record: a replica of that epoch durable at or past it can be
	// repaired.
	Resumable map[uint64]uint64 `msgpack:"resumable"`
	Dirs      map[uint64]string `msgpack:"dirs"`
	Time      int64             `msgpack:"time"`
}

type activityEntry struct {
	Epoch   uint64 `msgpack:"epoch"`
	Last    uint64 `msgpack:"last"`
	Time    int64  `msgpack:"time"`
	Changes []byte `msgpack:"changes"`
}

// prior is what an earlier master's activity record says.
type prior struct {
	resumable map[uint64]uint64
	changes   *journal.Changes
	dirs      map[uint64]string
	last      time.Time // when it last recorded anything
}

const (
	activityFile   = "activity"
	kindHeader     = 1
	kindEntry      = 2
	maxActivity    = 4 << 20 // compact past this
	maxFrame       = 256 << 20
	activityLimit  = 1 << 20 // paths kept before the record says "everything"
	crcFrameHeader = 8
)

var errActivity = errors.New("master: corrupt activity record")

// readActivity loads an earlier record, nil if there is none.
func readActivity(dir string, log *slog.Logger) (*prior, error) {
	path := filepath.Join(dir, activityFile)
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("master: activity record: %w", err)
	}
	defer f.Close()
	r := bufio.NewReader(f)
	var (
		p   *prior
		off int64
	)
	for {
		kind, body, n, err := readFrame(r)
		if err == io.EOF {
			break
		}
		if err != nil {
			log.Warn("activity record ends in a torn or corrupt frame; what came before it stands",
				"file", path, "offset", off, "err", err)
			break
		}
		off += n
		switch {
		case kind == kindHeader && p == nil:
			var h activityHeader
			if err := msgpack.Unmarshal(body, &h); err != nil {
				return nil, fmt.Errorf("master: activity record %s: header: %v: %w", path, err, errActivity)
			}
			p = &prior{resumable: h.Resumable, dirs: h.Dirs, changes: journal.NewChanges(activityLimit), last: time.Unix(0, h.Time)}
		case kind == kindEntry && p != nil:
			var e activityEntry
			if err := msgpack.Unmarshal(body, &e); err != nil {
				return nil, fmt.Errorf("master: activity record %s: entry at offset %d: %v: %w", path, off-n, err, errActivity)
			}
			ch, err := journal.DecodeChanges(e.Changes, 0)
			if err != nil {
				return nil, fmt.Errorf("master: activity record %s: entry at offset %d: %w", path, off-n, err)
			}
			p.changes.Merge(ch)
			p.last = time.Unix(0, e.Time)
		default:
			return nil, fmt.Errorf("master: activity record %s: frame of kind %d at offset %d: %w", path, kind, off-n, errActivity)
		}
	}
	return p, nil
}

func readFrame(r *bufio.Reader) (byte, []byte, int64, error) {
	var h [crcFrameHeader]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		if err == io.EOF {
			return 0, nil, 0, io.EOF
		}
		return 0, nil, 0, fmt.Errorf("frame header: %w", err)
	}
	n := binary.LittleEndian.Uint32(h[0:])
	if n == 0 || n > maxFrame {
		return 0, nil, 0, fmt.Errorf("frame length %d", n)
	}
	// Grown as bytes arrive: a torn length must not cost what it claims.
	var buf bytes.Buffer
	if _, err := io.CopyN(&buf, r, int64(n)); err != nil {
		return 0, nil, 0, fmt.Errorf("frame body: %w", err)
	}
	body := buf.Bytes()
	if got, want := crc32.Checksum(body, castagnoli), binary.LittleEndian.Uint32(h[4:]); got != want {
		return 0, nil, 0, fmt.Errorf("frame crc %#x, stored %#x", got, want)
	}
	return body[0], body[1:], int64(crcFrameHeader + n), nil
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// newActivity starts a record for this master, carrying over what an
// earlier one's replicas may still need.
func newActivity(dir string, epoch uint64, p *prior, log *slog.Logger) (*activity, error) {
	a := &activity{path: filepath.Join(dir, activityFile), log: log, changes: journal.NewChanges(activityLimit)}
	a.hdr = activityHeader{Resumable: map[uint64]uint64{epoch: 0}, Time: time.Now().UnixNano()}
	if p != nil {
		for e, from := range p.resumable {
			a.hdr.Resumable[e] = from
		}
		a.hdr.Dirs = p.dirs
		a.changes.Merge(p.changes)
	}
	if err := a.rewrite(); err != nil {
		return nil, err
	}
	return a, nil
}

// rewrite replaces the file with the header and, if any, one entry holding
// everything recorded since it.
func (a *activity) rewrite() error {
	tmp := a.path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("master: activity record: %w", err)
	}
	w := bufio.NewWriter(f)
	size, err := writeFrame(w, kindHeader, &a.hdr)
	if err == nil && (a.changes.Len() > 0 || a.changes.Full()) {
		var n int64
		n, err = a.entry(w, 0, a.last, a.changes)
		size += n
	}
	if err == nil {
		err = w.Flush()
	}
	if err == nil {
		err = f.Sync()
	}
	if err == nil {
		err = os.Rename(tmp, a.path)
	}
	if err != nil {
		f.Close()
		return fmt.Errorf("master: activity record: %w", err)
	}
	if a.f != nil {
		a.f.Close()
	}
	a.f, a.w, a.size = f, bufio.NewWriter(f), size
	// A record that is large once compacted would otherwise be rewritten on
	// every append.
	a.compact = max(maxActivity, 2*size)
	return nil
}

func (a *activity) entry(w io.Writer, epoch, last uint64, ch *journal.Changes) (int64, error) {
	b, err := ch.Encode()
	if err != nil {
		return 0, err
	}
	return writeFrame(w, kindEntry, &activityEntry{Epoch: epoch, Last: last, Time: time.Now().UnixNano(), Changes: b})
}

// append records what a batch changes, before the batch goes anywhere.
// The bytes reach the kernel before it returns: the page cache outlives a
// killed agent.
func (a *activity) append(epoch, last uint64, recs []journal.Record) error {
	ch := journal.NewChanges(0)
	for i := range recs {
		ch.Add(&recs[i])
	}
	n, err := a.entry(a.w, epoch, last, ch)
	if err == nil {
		err = a.w.Flush()
	}
	if err != nil {
		return fmt.Errorf("master: activity record: %w", err)
	}
	a.changes.Merge(ch)
	a.last, a.size = last, a.size+n
	if a.size > a.compact {
		return a.rewrite()
	}
	return nil
}

// restart records where the directories are and, when every replica has
// epoch's records up to durable and durable covers all that was recorded,
// starts the record over from there.
func (a *activity) restart(epoch, durable uint64, caughtUp bool, dirs map[uint64]string) error {
	if caughtUp && durable >= a.last {
		a.hdr.Resumable = map[uint64]uint64{epoch: durable}
		a.changes = journal.NewChanges(activityLimit)
	}
	a.hdr.Dirs = dirs
	a.hdr.Time = time.Now().UnixNano()
	return a.rewrite()
}

func (a *activity) close() error {
	if a.f == nil {
		return nil
	}
	err := a.w.Flush()
	return errors.Join(err, a.f.Close())
}

func writeFrame(w io.Writer, kind byte, v any) (int64, error) {
	body, err := msgpack.Marshal(v)
	if err != nil {
		return 0, err
	}
	body = append([]byte{kind}, body...)
	var h [crcFrameHeader]byte
	binary.LittleEndian.PutUint32(h[0:], uint32(len(body)))
	binary.LittleEndian.PutUint32(h[4:], crc32.Checksum(body, castagnoli))
	if _, err := w.Write(h[:]); err != nil {
		return 0, err
	}
	_, err = w.Write(body)
	return int64(len(h) + len(body)), err
}
