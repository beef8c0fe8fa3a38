// Command writecap is the replication agent.
package main

import (
	"fmt"
	"log/slog"
	"os"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/writecap/writecap/config"
)

func main() {
	root := &cobra.Command{
		Use:           "writecap",
		Short:         "Real-time replication: eBPF write capture, ordered replay",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	verbose := root.PersistentFlags().BoolP("verbose", "v", false, "log debug detail")
	root.PersistentPreRun = func(*cobra.Command, []string) {
		level := slog.LevelInfo
		if *verbose {
			level = slog.LevelDebug
		}
		slog.SetDefault(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level})))
	}
	root.AddCommand(mirrorCmd())
	root.AddCommand(certsCmd())
	root.AddCommand(masterCmd())
	root.AddCommand(replicaCmd())
	root.AddCommand(statusCmd())
	root.AddCommand(syncCmd())
	root.AddCommand(verifyCmd())
	if err := root.Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "writecap:", err)
		os.Exit(1)
	}
}

// nodeFlags are the settings master and replica share: the scenario file
// that replaces the other flags, the node's certificate files and the
// metrics address.
func nodeFlags(fl *pflag.FlagSet, file *string, f *config.File) {
	fl.StringVar(file, "config", "", "YAML scenario file (instead of the flags below)")
	fl.StringVar(&f.TLS.CA, "ca", "", "the scenario's CA certificate (PEM)")
	fl.StringVar(&f.TLS.Cert, "cert", "", "this node's certificate (PEM)")
	fl.StringVar(&f.TLS.Key, "key", "", "this node's key (PEM)")
	fl.StringVar(&f.Metrics, "metrics", "", "serve /metrics and /status on this address")
}
