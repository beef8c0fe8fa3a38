package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/writecap/writecap/mirror"
	"github.com/writecap/writecap/resync"
)

func mirrorCmd() *cobra.Command {
	var cfg mirror.Config
	cmd := &cobra.Command{
		Use:   "mirror --source DIR --target DIR",
		Short: "Capture every change under SOURCE and replay it into TARGET, continuously",
		Long: `mirror makes TARGET an exact copy of SOURCE (anything else in TARGET is
removed) and keeps it so until interrupted. It prints "ready" once capture is
attached. On SIGINT or SIGTERM it applies everything captured so far, makes it
durable and exits 0.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			cfg.Logger = slog.Default()
			cfg.Ready = func() { fmt.Fprintln(cmd.OutOrStdout(), "ready") }
			return mirror.Run(ctx, cfg)
		},
	}
	f := cmd.Flags()
	f.StringVar(&cfg.Source, "source", "", "protected directory")
	f.StringVar(&cfg.Target, "target", "", "replica directory (made an exact copy of source)")
	f.BoolVar(&cfg.Compress, "compress", true, "lz4-compress journal batches")
	f.IntVar(&cfg.BlockSize, "block-size", resync.DefaultBlockSize, "block of the initial comparison with what the target holds")
	f.IntVar(&cfg.Capture.RingSize, "ring-size", 64<<20, "kernel ring buffer bytes (power of two); when full, lost ranges are re-read from the source")
	f.Int64Var(&cfg.Capture.MaxData, "max-data", 8<<20, "largest write whose bytes travel through the ring; larger writes are re-read from the source")
	cmd.MarkFlagRequired("source")
	cmd.MarkFlagRequired("target")
	return cmd
}
