package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/writecap/writecap/config"
	"github.com/writecap/writecap/replica"
)

func replicaCmd() *cobra.Command {
	var (
		file string
		f    config.File
		s    config.Scenario
	)
	cmd := &cobra.Command{
		Use:   "replica --listen ADDR --root DIR --ca FILE --cert FILE --key FILE",
		Short: "Take a master's stream and replay it beneath ROOT",
		Long: `replica accepts TLS sessions from masters holding a certificate of the CA,
stores what they send durably in its spool, applies it in order beneath ROOT and
acknowledges each step. It prints "ready" once listening.
With --config FILE the scenario file gives every setting, including several
scenarios (one root per master).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			f.Scenarios = []config.Scenario{s}
			loaded, err := config.LoadOr(file, &f)
			if err != nil {
				return err
			}
			cfg, err := loaded.Replica()
			if err != nil {
				return err
			}
			cfg.Logger = slog.Default()
			cfg.Ready = func(net.Addr) { fmt.Fprintln(cmd.OutOrStdout(), "ready") }
			return replica.Run(ctx, cfg)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.Listen, "listen", "", "address to accept masters on, host:port")
	fl.StringVar(&f.Name, "name", "", "this replica's identity (its certificate's common name)")
	nodeFlags(fl, &file, &f)
	fl.StringVar(&s.ID, "scenario", "default", "scenario id")
	fl.StringVar(&s.Root, "root", "", "directory the master's tree is replayed into")
	fl.StringVar(&s.State, "state", "", "spool and state directory (default "+config.DefaultStateDir+"/replica/SCENARIO)")
	fl.StringVar(&s.Master, "master", "", "the only master identity taken (default: any of the CA)")
	return cmd
}
