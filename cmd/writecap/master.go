package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/writecap/writecap/config"
	"github.com/writecap/writecap/master"
)

func masterCmd() *cobra.Command {
	var (
		file                       string
		f                          config.File
		s                          config.Scenario
		replicaName                string
		replicas                   []string
		compress                   bool
		bandwidth, spoolMax, spMem string
		minFree                    string
	)
	cmd := &cobra.Command{
		Use:   "master --source DIR --replica ADDR --ca FILE --cert FILE --key FILE",
		Short: "Capture every change under SOURCE and stream it to replicas",
		Long: `master captures every change under SOURCE, spools it and streams it over
TLS to each replica, which rebuilds SOURCE from a full copy the first time and
resumes from what it has made durable afterwards. It prints "ready" once capture
is attached. On SIGINT or SIGTERM it waits (up to the drain timeout) until the
connected replicas have applied everything captured, then exits 0.
With --config FILE the scenario file gives every setting instead of flags.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			if file == "" {
				s.Compress = &compress
				for _, a := range replicas {
					s.Replicas = append(s.Replicas, config.Replica{Addr: a, Name: replicaName})
				}
				for _, v := range []struct {
					flag string
					to   *config.Size
				}{{bandwidth, &s.Bandwidth}, {spoolMax, &s.Spool.Max}, {spMem, &s.Spool.Memory}, {minFree, &s.Spool.MinFree}} {
					if v.flag == "" {
						continue
					}
					n, err := config.ParseSize(v.flag)
					if err != nil {
						return err
					}
					*v.to = config.Size(n)
				}
				f.Scenarios = []config.Scenario{s}
			}
			loaded, err := config.LoadOr(file, &f)
			if err != nil {
				return err
			}
			cfgs, err := loaded.Masters()
			if err != nil {
				return err
			}
			for i := range cfgs {
				cfgs[i].Logger = slog.Default()
			}
			return master.RunAll(ctx, cfgs, func() { fmt.Fprintln(cmd.OutOrStdout(), "ready") })
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.Name, "name", "", "this master's identity (its certificate's common name)")
	nodeFlags(fl, &file, &f)
	fl.StringVar(&s.ID, "scenario", "default", "scenario id, as the replica knows it")
	fl.StringVar(&s.Source, "source", "", "protected directory")
	fl.StringVar(&s.State, "state", "", "spool directory (default "+config.DefaultStateDir+"/master/SCENARIO)")
	fl.StringArrayVar(&replicas, "replica", nil, "replica address host:port (repeat for several)")
	fl.StringVar(&replicaName, "replica-name", "", "identity the replicas' certificates must carry (default: any of the CA)")
	fl.BoolVar(&compress, "compress", true, "lz4-compress journal batches")
	fl.StringVar(&bandwidth, "bandwidth", "", "bytes per second to each replica, e.g. 50MiB (default unlimited)")
	fl.StringVar(&spMem, "spool-memory", "", "spool bytes kept in memory before disk (default 256MiB)")
	fl.StringVar(&spoolMax, "spool-max", "", "spool bytes in all; past it replicas behind are rebuilt (default unlimited)")
	fl.StringVar(&minFree, "min-free", "", "bytes the spool leaves free on its file system")
	fl.DurationVar((*time.Duration)(&s.Slack), "resume-slack", 30*time.Second,
		"after a restart, also repair what changed this long before the last recorded change")
	fl.DurationVar((*time.Duration)(&s.Drain), "drain-timeout", time.Minute, "how long a stopping master waits for replicas")
	fl.Var(&s.BlockSize, "block-size", "block of comparisons with what a replica holds (default 64KiB)")
	return cmd
}
