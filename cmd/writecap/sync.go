package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"golang.org/x/term"

	"github.com/writecap/writecap/config"
	"github.com/writecap/writecap/monitor"
	"github.com/writecap/writecap/resync"
	"github.com/writecap/writecap/snapshot"
)

func syncCmd() *cobra.Command {
	var (
		src, dst      string
		master, rep   string
		method, trust string
		snap          string
		block, thresh = config.Size(resync.DefaultBlockSize), config.Size(resync.DefaultThreshold)
		pf            progressFlags
	)
	cmd := &cobra.Command{
		Use:   "sync (--source DIR --target DIR | --master STATE [--replica NAME])",
		Short: "Bring TARGET to SOURCE's state once, sending only what differs",
		Long: `sync makes TARGET hold exactly what SOURCE holds: names, contents, modes,
owners, modification times, symlinks and hard links; what only TARGET holds is
removed. Files below --threshold whose size and modification time match are
taken as equal (--trust); larger files are compared block by block by their
hashes and only differing blocks are written. A sync that is interrupted
resumes without redoing the files it completed.

With --master STATE (a running master scenario's state directory, or the
control socket in it), that master resyncs a replica on demand: the replica
sends its manifest and gets a full copy made against it, only what differs,
while capture goes on; the command returns once the replica has applied the
copy.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if master != "" {
				if src != "" || dst != "" {
					return errors.New("sync takes --source and --target, or --master, not both")
				}
				var res struct{ From, To uint64 }
				if err := monitor.Call(cmd.Context(), master, "resync", url.Values{"replica": {rep}}, &res); err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "replica resynchronised: a copy against its manifest, seqs %d to %d, applied\n", res.From, res.To)
				return nil
			}
			if src == "" || dst == "" {
				return errors.New("sync needs --source and --target, or --master")
			}
			m, err := resync.ParseMethod(method)
			if err != nil {
				return err
			}
			tr, err := resync.ParseTrust(trust)
			if err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			o := resync.Options{Method: m, Trust: tr, BlockSize: int(block), Threshold: int64(thresh),
				Progress: &resync.Progress{}, Logger: slog.Default(),
				Skip: func(rel string, err error) { slog.Warn("not synchronised", "path", rel, "err", err) }}
			if o.Snapshot, err = snapshotOf(snap, src); err != nil {
				return err
			}
			done, err := pf.show(ctx, o.Progress, "sync")
			if err != nil {
				return err
			}
			st, err := resync.Sync(ctx, src, dst, o)
			done()
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "synchronised: %d files (%d copied, %d patched, %d unchanged, %d resumed), %d links, %d removed, %d of %d blocks sent, %d bytes sent\n",
				st.Files, st.Copied, st.Patched, st.Unchanged, st.Resumed, st.Linked, st.Removed, st.BlocksSent, st.BlocksCompared, st.BytesSent)
			return nil
		},
	}
	cmd.AddCommand(exportCmd(), importCmd(), volumeCmd())
	f := cmd.Flags()
	f.StringVar(&src, "source", "", "directory to copy from")
	f.StringVar(&dst, "target", "", "directory to bring to the source's state")
	f.StringVar(&master, "master", "", "a running master scenario's state directory or control socket: resync its replica")
	f.StringVar(&rep, "replica", "", "the replica to resync, by address or identity (with --master; may be omitted when there is one)")
	f.StringVar(&method, "method", "auto", "auto (blocks for large files), file (whole files) or block (blocks for every file)")
	f.StringVar(&trust, "trust", "small", "when equal size and time mean equal content: small (files below the threshold), always, never")
	f.Var(&block, "block-size", "block size of block-level comparison")
	f.Var(&thresh, "threshold", "size from which auto compares blocks")
	f.StringVar(&snap, "snapshot", "", "sync from a snapshot of the source: auto, btrfs, freeze or lvm (default: the live tree)")
	pf.add(f)
	return cmd
}

// snapshotOf is the snapshot provider the --snapshot flag names for dir.
func snapshotOf(name, dir string) (snapshot.Provider, error) {
	switch name {
	case "":
		return nil, nil
	case "auto":
		return snapshot.Detect(dir, snapshot.Options{})
	}
	return snapshot.ByName(name, snapshot.Options{})
}

// progressFlags say how a sync shows its progress: on stderr (a bar on a
// terminal, a line every period otherwise) and as metrics.
type progressFlags struct {
	every   time.Duration
	metrics string
}

func (pf *progressFlags) add(f *pflag.FlagSet) {
	f.DurationVar(&pf.every, "progress", 5*time.Second, "how often progress is printed when stderr is not a terminal")
	f.StringVar(&pf.metrics, "metrics", "", "serve the progress as Prometheus metrics at /metrics on this address")
}

// show displays p until the returned function is called.
func (pf *progressFlags) show(ctx context.Context, p *resync.Progress, what string) (func(), error) {
	ctx, cancel := context.WithCancel(ctx)
	if pf.metrics != "" {
		reg := prometheus.NewRegistry()
		reg.MustRegister(p.Collector(what))
		if _, err := monitor.Serve(ctx, pf.metrics, reg, func() monitor.Report { return monitor.Report{} }, slog.Default()); err != nil {
			cancel()
			return nil, err
		}
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		p.Show(ctx, os.Stderr, term.IsTerminal(int(os.Stderr.Fd())), what, pf.every)
	}()
	return func() { cancel(); <-done }, nil
}
