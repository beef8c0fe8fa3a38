package resync

import (
	"context"
	"fmt"
	"io"
	"sync/atomic"
	"time"

	"github.com/dustin/go-humanize"
	"github.com/schollz/progressbar/v3"
)

// Progress counts the work of a sync or a verify as it goes; safe for
// concurrent use, read by the progress display and by metrics.
type Progress struct {
	FilesTotal atomic.Int64 // files to examine, known once both sides are scanned
	FilesDone  atomic.Int64
	BytesTotal atomic.Int64 // bytes of those files
	BytesDone  atomic.Int64 // bytes examined: compared, or copied
	BytesSent  atomic.Int64 // bytes that had to cross: data and hashes
	started    atomic.Int64 // unix nanoseconds
}

func (p *Progress) start() { p.started.CompareAndSwap(0, time.Now().UnixNano()) }

// Reading is one reading of a Progress.
type Reading struct {
	FilesTotal, FilesDone int64
	BytesTotal, BytesDone int64
	BytesSent             int64
	Elapsed               time.Duration
}

// Read takes a reading.
func (p *Progress) Read() Reading {
	s := Reading{
		FilesTotal: p.FilesTotal.Load(), FilesDone: p.FilesDone.Load(),
		BytesTotal: p.BytesTotal.Load(), BytesDone: p.BytesDone.Load(), BytesSent: p.BytesSent.Load(),
	}
	if t := p.started.Load(); t != 0 {
		s.Elapsed = time.Since(time.Unix(0, t))
	}
	return s
}

// Rate is the bytes examined per second so far.
func (s Reading) Rate() float64 {
	if s.Elapsed <= 0 {
		return 0
	}
	return float64(s.BytesDone) / s.Elapsed.Seconds()
}

// ETA is the time left at the rate so far; zero when unknown.
func (s Reading) ETA() time.Duration {
	r := s.Rate()
	if r <= 0 || s.BytesTotal <= s.BytesDone {
		return 0
	}
	return time.Duration(float64(s.BytesTotal-s.BytesDone) / r * float64(time.Second)).Round(time.Second)
}

func (s Reading) String() string {
	return fmt.Sprintf("%s of %s examined, %d of %d files, %s sent, %s/s, ETA %s",
		humanize.IBytes(uint64(s.BytesDone)), humanize.IBytes(uint64(s.BytesTotal)),
		s.FilesDone, s.FilesTotal, humanize.IBytes(uint64(s.BytesSent)),
		humanize.IBytes(uint64(s.Rate())), s.ETA())
}

// Show displays p on w until ctx ends: a progress bar when w is a terminal,
// otherwise a plain line every interval (for logs).
func (p *Progress) Show(ctx context.Context, w io.Writer, terminal bool, what string, interval time.Duration) {
	if !terminal {
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				fmt.Fprintf(w, "%s: %s\n", what, p.Read())
				return
			case <-t.C:
				fmt.Fprintf(w, "%s: %s\n", what, p.Read())
			}
		}
	}
	bar := progressbar.NewOptions64(-1, progressbar.OptionSetWriter(w), progressbar.OptionShowBytes(true),
		progressbar.OptionSetDescription(what), progressbar.OptionSetPredictTime(true),
		progressbar.OptionShowElapsedTimeOnFinish(), progressbar.OptionThrottle(interval/4),
		progressbar.OptionUseIECUnits(true), progressbar.OptionFullWidth())
	t := time.NewTicker(interval / 4)
	defer t.Stop()
	for {
		s := p.Read()
		if s.BytesTotal > 0 && int64(bar.GetMax64()) != s.BytesTotal {
			bar.ChangeMax64(s.BytesTotal)
		}
		bar.Describe(fmt.Sprintf("%s %d/%d files, %s sent", what, s.FilesDone, s.FilesTotal,
			humanize.IBytes(uint64(s.BytesSent))))
		bar.Set64(s.BytesDone)
		select {
		case <-ctx.Done():
			bar.Finish()
			fmt.Fprintln(w)
			return
		case <-t.C:
		}
	}
}
