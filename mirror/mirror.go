// Package mirror runs the core data path on one machine: capture from a
// source tree, journal batches, ordered replay into a target tree.
package mirror

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/writecap/writecap/capture"
	"github.com/writecap/writecap/journal"
	"github.com/writecap/writecap/replay"
	"github.com/writecap/writecap/resync"
)

// Config is what `writecap mirror` needs.
type Config struct {
	Source   string
	Target   string
	Compress bool
	// BlockSize is the block size of the initial comparison with what the
	// target holds (resync.DefaultBlockSize when 0).
	BlockSize int
	Capture   capture.Config // Root and Base are set here
	Logger    *slog.Logger
	// Ready is called once capture is attached, before the initial copy:
	// from then on every change to Source reaches Target.
	Ready func()
}

// queueDepth bounds the encoded batches waiting for the applier, so a slow
// target disk pushes back on capture rather than filling memory.
const queueDepth = 64

// Run mirrors until ctx ends, then applies everything captured so far, makes
// it durable and returns.
func Run(ctx context.Context, cfg Config) error {
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	src, dst, err := resync.Dirs(cfg.Source, cfg.Target)
	if err != nil {
		return err
	}
	// The target changes only through the applier, which has not started:
	// what it holds now is what the initial copy compares with.
	base, err := resync.BuildManifest(ctx, dst, cfg.BlockSize, nil, nil)
	if err != nil {
		return err
	}
	cc := cfg.Capture
	cc.Root = src
	cc.Logger = log
	cc.Base = base
	source, err := capture.New(cc)
	if err != nil {
		return err
	}
	defer source.Close()
	if cfg.Ready != nil {
		cfg.Ready()
	}
	app, err := replay.Open(dst, replay.Options{Logger: log})
	if err != nil {
		return err
	}
	defer app.Close()

	batches := make(chan []byte, queueDepth)
	done := make(chan struct{})
	var appErr error
	go func() {
		defer close(done)
		appErr = apply(app, batches, log)
	}()

	sink := &encoder{enc: journal.NewEncoder(journal.EncoderOptions{Compress: cfg.Compress}), out: batches, done: done}
	capErr := source.Run(ctx, sink)
	close(batches)
	<-done
	if err := errors.Join(capErr, appErr); err != nil {
		return err
	}
	if err := app.Sync(); err != nil {
		return err
	}
	st := source.Stats()
	log.Info("mirror stopped", "records", st.Records, "applied", app.Applied(), "lost", st.Lost,
		"races_repaired", st.Races, "reconciles", st.Reconciles,
		"target_files_compared", st.BaseFiles, "target_bytes_kept", st.BaseSkipped)
	return nil
}

// encoder is the capture sink: it turns records into journal batches.
type encoder struct {
	enc  *journal.Encoder
	out  chan<- []byte
	done <-chan struct{}
}

func (e *encoder) Write(recs []journal.Record) error {
	b, err := e.enc.AppendBatch(nil, recs)
	if err != nil {
		return err
	}
	select {
	case e.out <- b:
		return nil
	case <-e.done:
		// The applier stopped: nothing after its last good record applies.
		return errors.New("mirror: replay stopped")
	}
}

func apply(app *replay.Applier, batches <-chan []byte, log *slog.Logger) error {
	trace := log.Enabled(context.Background(), slog.LevelDebug)
	var (
		dec  = journal.Decoder{Alias: true} // records are applied before the next batch
		recs []journal.Record
	)
	for b := range batches {
		for off := 0; off < len(b); {
			var (
				n   int
				err error
			)
			recs, n, err = dec.DecodeChecked(b[off:], recs[:0])
			if err != nil {
				return fmt.Errorf("mirror: decode batch: %w", err)
			}
			off += n
			for i := range recs {
				if trace {
					log.Debug("apply", "record", recs[i].String())
				}
				if err := app.Apply(&recs[i]); err != nil {
					return err
				}
			}
		}
	}
	return nil
}
