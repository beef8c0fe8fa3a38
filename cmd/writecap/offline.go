package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/writecap/writecap/config"
	"github.com/writecap/writecap/resync"
)

func exportCmd() *cobra.Command {
	var (
		src, dir string
		snap     string
		block    = config.Size(resync.DefaultBlockSize)
		pf       progressFlags
	)
	cmd := &cobra.Command{
		Use:   "export --source DIR --to DIR",
		Short: "Write SOURCE's tree and a manifest of its block hashes to a directory (removable media)",
		Long: `export copies SOURCE into TO/data and writes TO/manifest, the block hashes of
what it copied. A master may go on capturing and spooling meanwhile: a replica
seeded by "writecap sync import" sends its manifest when it first connects and
gets only what changed since.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			p := &resync.Progress{}
			done, err := pf.show(ctx, p, "export")
			if err != nil {
				return err
			}
			o := resync.Options{BlockSize: int(block), Progress: p, Logger: slog.Default()}
			if o.Snapshot, err = snapshotOf(snap, src); err != nil {
				return err
			}
			st, err := resync.Export(ctx, src, dir, o)
			done()
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "exported %d files, %d bytes copied, manifest in %s\n", st.Files, st.BytesSent, dir)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&src, "source", "", "directory to export")
	f.StringVar(&dir, "to", "", "directory to write the export to")
	f.StringVar(&snap, "snapshot", "", "export a snapshot of the source: auto, btrfs, freeze or lvm (default: the live tree)")
	f.Var(&block, "block-size", "block size of the manifest's hashes")
	pf.add(f)
	cmd.MarkFlagRequired("source")
	cmd.MarkFlagRequired("to")
	return cmd
}

func importCmd() *cobra.Command {
	var (
		dir, dst string
		pf       progressFlags
	)
	cmd := &cobra.Command{
		Use:   "import --from DIR --target DIR",
		Short: "Check an export against its manifest, copy it into TARGET, and check TARGET",
		Long: `import refuses an export whose data does not match its manifest, naming the
first file and block that differ, before TARGET is touched. Then it brings
TARGET to the export's state and checks TARGET against the manifest.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			p := &resync.Progress{}
			done, err := pf.show(ctx, p, "import")
			if err != nil {
				return err
			}
			st, err := resync.Import(ctx, dir, dst, resync.Options{Progress: p, Logger: slog.Default()})
			done()
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "imported %d files (%d copied, %d patched, %d unchanged), checked against the manifest\n",
				st.Files, st.Copied, st.Patched, st.Unchanged)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&dir, "from", "", "directory an export was written to")
	f.StringVar(&dst, "target", "", "directory to bring to the export's state (a replica's root)")
	pf.add(f)
	cmd.MarkFlagRequired("from")
	cmd.MarkFlagRequired("target")
	return cmd
}
