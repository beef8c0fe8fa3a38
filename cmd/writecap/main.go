// Command writecap is the replication agent.
package main

import (
	"fmt"
	"log/slog"
	"os"

	"github.com/spf13/cobra"
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
	if err := root.Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "writecap:", err)
		os.Exit(1)
	}
}
