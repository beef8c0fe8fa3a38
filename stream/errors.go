package stream

import (
	"errors"
	"fmt"
)

// Read and decode errors wrap exactly one of these, after text naming what
// was wrong and where, so callers can both branch and log.
var (
	// ErrCorrupt means the bytes cannot be a frame or message this package
	// wrote: the connection must not be read past it.
	ErrCorrupt = errors.New("stream: corrupt frame")
	// ErrTruncated means the connection ended inside a frame.
	ErrTruncated = errors.New("stream: truncated frame")
	// ErrVersion means the peer speaks a protocol version this one does not.
	ErrVersion = errors.New("stream: unsupported protocol version")
)

// ErrClosedByPeer means the other side sent Close; the error's text carries
// its reason.
var ErrClosedByPeer = errors.New("stream: closed by peer")

// IsCorrupt reports whether err comes from a corrupt frame or message.
func IsCorrupt(err error) bool { return errors.Is(err, ErrCorrupt) }

// IsTruncated reports whether err comes from a frame cut short.
func IsTruncated(err error) bool { return errors.Is(err, ErrTruncated) }

// IsVersion reports whether err comes from a frame of another protocol version.
func IsVersion(err error) bool { return errors.Is(err, ErrVersion) }

func corruptf(format string, args ...any) error {
	return fmt.Errorf("%s: %w", fmt.Sprintf(format, args...), ErrCorrupt)
}

func truncatedf(format string, args ...any) error {
	return fmt.Errorf("%s: %w", fmt.Sprintf(format, args...), ErrTruncated)
}
