package replay

import (
	"errors"
	"strings"

	"github.com/writecap/writecap/journal"
)

var (
	// ErrEscape: a path is invalid or would resolve outside the root.
	ErrEscape = errors.New("replay: path escapes root")
	// ErrGap: a record's sequence number is not the next one expected.
	ErrGap = errors.New("replay: sequence gap")
	// ErrUnresolved: a dirty record reached the replica; the master must
	// turn dirty ranges into writes before sending them.
	ErrUnresolved = errors.New("replay: dirty record not resolved by the master")
	// ErrMalformed: a record's fields make no sense for its operation.
	ErrMalformed = errors.New("replay: malformed record")
	// ErrClosed: the Applier has been closed.
	ErrClosed = errors.New("replay: applier closed")
)

// IsEscape reports whether err is (or wraps) ErrEscape.
func IsEscape(err error) bool { return errors.Is(err, ErrEscape) }

// RecordError is an error about one record, which it names.
type RecordError struct {
	Seq   uint64
	Op    journal.Op
	Path  string
	Path2 string
	Err   error
	rec   string // the record as journal.Record.String shows it
}

func newRecordError(r *journal.Record, err error) *RecordError {
	return &RecordError{Seq: r.Seq, Op: r.Op, Path: r.Path, Path2: r.Path2, Err: err, rec: r.String()}
}

// Error reads e.g. `replay: record #12 rename "a" -> "../x": path escapes root`.
func (e *RecordError) Error() string {
	// The cause's own "replay: " prefix would repeat ours.
	return "replay: record " + e.rec + ": " + strings.TrimPrefix(e.Err.Error(), "replay: ")
}

func (e *RecordError) Unwrap() error { return e.Err }
