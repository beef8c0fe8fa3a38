package main

import (
	"context"
	"errors"
	"net/url"
	"os"
	"os/signal"
	"strconv"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/writecap/writecap/config"
	"github.com/writecap/writecap/monitor"
	"github.com/writecap/writecap/resync"
)

// errDiffer makes verify exit 1 after its report.
var errDiffer = errors.New("the trees differ")

func verifyCmd() *cobra.Command {
	var (
		src, dst    string
		master, rep string
		at          uint64
		block       = config.Size(resync.DefaultBlockSize)
		pf          progressFlags
	)
	cmd := &cobra.Command{
		Use:   "verify (--source DIR --target DIR | --master STATE [--replica NAME])",
		Short: "Compare TARGET with SOURCE block by block and report what differs",
		Long: `verify compares names, kinds, modes, owners, sizes, symlink targets, hard
links and the hash of every block, prints each difference (files and block
ranges) and exits 1 when anything differs.

With --master STATE (a running master scenario's state directory, or the
control socket in it), that master compares its tree with a replica's while
replication goes on: the replica applies what it holds and sends its block
hashes (only hashes cross); what the master changed since is left out of the
comparison and counted.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			var r *resync.Report
			switch {
			case master != "" && src == "" && dst == "":
				var res struct{ Report *resync.Report }
				q := url.Values{"replica": {rep}, "at": {strconv.FormatUint(at, 10)}}
				if err := monitor.Call(ctx, master, "verify", q, &res); err != nil {
					return err
				}
				r = res.Report
			case master == "" && src != "" && dst != "":
				var err error
				if r, err = verifyLocal(ctx, src, dst, int(block), &pf); err != nil {
					return err
				}
			default:
				return errors.New("verify needs --source and --target, or --master")
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
	f.StringVar(&master, "master", "", "a running master scenario's state directory or control socket: verify its replica")
	f.StringVar(&rep, "replica", "", "the replica to verify, by address or identity (with --master; may be omitted when there is one)")
	f.Uint64Var(&at, "at", 0, "with --master: compare once the replica has applied this sequence number (at the seq it has applied then)")
	f.Var(&block, "block-size", "block size of the comparison")
	pf.add(f)
	return cmd
}

// verifyLocal compares two directories here.
func verifyLocal(ctx context.Context, src, dst string, block int, pf *progressFlags) (*resync.Report, error) {
	p := &resync.Progress{}
	done, err := pf.show(ctx, p, "verify")
	if err != nil {
		return nil, err
	}
	defer done()
	return resync.Verify(ctx, src, dst, resync.VerifyOptions{BlockSize: block, Progress: p})
}
