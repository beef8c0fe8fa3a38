package journal

import (
	"errors"
	"fmt"
)

// Decode errors wrap exactly one of ErrCorrupt or ErrTruncated, after text
// naming what was wrong and where, so callers can both branch and log.
var (
	// ErrCorrupt means the bytes cannot be a batch this package wrote: a
	// stream that yields it must not be read past it.
	ErrCorrupt = errors.New("journal: corrupt record")
	// ErrTruncated means the bytes end inside a batch; more may complete it.
	ErrTruncated = errors.New("journal: truncated batch")
)

// Encode errors: the records given to an Encoder cannot form a batch.
var (
	// ErrInvalid means a record or the sequence of records is unacceptable.
	ErrInvalid = errors.New("journal: invalid batch")
	// ErrTooLarge means the records exceed MaxRecords or MaxPayload; split them.
	ErrTooLarge = errors.New("journal: batch too large")
)

// IsCorrupt reports whether err comes from a corrupt batch.
func IsCorrupt(err error) bool { return errors.Is(err, ErrCorrupt) }

// IsTruncated reports whether err comes from a batch cut short.
func IsTruncated(err error) bool { return errors.Is(err, ErrTruncated) }

func corruptf(format string, args ...any) error {
	return fmt.Errorf("%s: %w", fmt.Sprintf(format, args...), ErrCorrupt)
}

func truncatedf(format string, args ...any) error {
	return fmt.Errorf("%s: %w", fmt.Sprintf(format, args...), ErrTruncated)
}
