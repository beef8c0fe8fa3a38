package main

import (
	"context"
	"errors"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/writecap/writecap/config"
	"github.com/writecap/writecap/resync"
)

// errDiffer makes verify exit 1 after its report.
var errDiffer = errors.New("the trees differ")

func verifyCmd() *cobra.Command {
	var (
		src, dst string
		block    = config.Size(resync.DefaultBlockSize)
		pf       progressFlags
	)
	cmd := &cobra.Command{
		Use:   "verify --source DIR --target DIR",
		Short: "Compare TARGET with SOURCE block by block and report what differs",
		Long: `verify compares names, kinds, modes, owners, sizes, symlink targets, hard
links and the hash of every block, prints each difference (files and block
ranges) and exits 1 when anything differs.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			p := &resync.Progress{}
			done, err := pf.show(ctx, p, "verify")
			if err != nil {
				return err
			}
			r, err := resync.Verify(ctx, src, dst, resync.VerifyOptions{BlockSize: int(block), Progress: p})
			done()
			if err != nil {
				return err
			}
			r.Print(cmd.OutOrStdout())
			if !r.Equal() {
				return errDiffer
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&src, "source", "", "directory that holds the right data")
	f.StringVar(&dst, "target", "", "directory to check against it")
	f.Var(&block, "block-size", "block size of the comparison")
	pf.add(f)
	cmd.MarkFlagRequired("source")
	cmd.MarkFlagRequired("target")
	return cmd
}
