package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/writecap/writecap/config"
	"github.com/writecap/writecap/resync"
)

func volumeCmd() *cobra.Command {
	var (
		o     resync.VolumeOptions
		block = config.Size(resync.DefaultBlockSize)
		pf    progressFlags
	)
	cmd := &cobra.Command{
		Use:   "volume --source SNAPSHOT --target IMAGE",
		Short: "Copy a volume snapshot's used blocks to a replica image or device, only those that differ",
		Long: `volume compares SOURCE (a snapshot of a volume: a block device or a
file-system image) with TARGET (an image file, created sparse, or a block
device) block by block and writes the blocks that differ. Blocks the file
system does not use (ext4 and xfs with a clean or frozen log; holes of an
image) are skipped. Mount TARGET and continue with file-level replication.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			p := &resync.Progress{}
			o.BlockSize = int(block)
			o.Progress = func(done, total int64) {
				p.BytesTotal.Store(total)
				p.BytesDone.Store(done)
			}
			done, err := pf.show(ctx, p, "volume")
			if err != nil {
				return err
			}
			st, err := resync.SyncVolume(ctx, o)
			done()
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "volume: %d blocks, %d unused (%s), %d the same, %d sent, %d bytes sent\n",
				st.Blocks, st.Unused, st.Usage, st.Same, st.Sent, st.BytesSent)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.Source, "source", "", "snapshot of the volume: block device or image file")
	f.StringVar(&o.Target, "target", "", "replica image file or block device")
	f.StringVar(&o.FSType, "fs", "", "file system: ext4, xfs, raw (every block); detected when empty")
	f.Var(&block, "block-size", "block size of the comparison")
	pf.add(f)
	cmd.MarkFlagRequired("source")
	cmd.MarkFlagRequired("target")
	return cmd
}
