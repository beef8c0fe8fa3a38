package main

import (
	"context"
	"encoding/json"
	"time"

	"github.com/spf13/cobra"

	"github.com/writecap/writecap/monitor"
)

func statusCmd() *cobra.Command {
	var (
		addr   string
		asJSON bool
	)
	cmd := &cobra.Command{
		Use:   "status --addr HOST:PORT",
		Short: "Show a running agent's scenarios: state, sequence numbers, lag, spool, throughput",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			r, err := monitor.Fetch(ctx, addr)
			if err != nil {
				return err
			}
			if asJSON {
				e := json.NewEncoder(cmd.OutOrStdout())
				e.SetIndent("", "  ")
				return e.Encode(r)
			}
			return r.Print(cmd.OutOrStdout())
		},
	}
	cmd.Flags().StringVar(&addr, "addr", "127.0.0.1:9100", "the agent's --metrics address")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the status document as JSON")
	return cmd
}
