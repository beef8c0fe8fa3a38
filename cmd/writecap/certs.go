package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/writecap/writecap/certs"
)

func certsCmd() *cobra.Command {
	var opts certs.Options
	cmd := &cobra.Command{
		Use:   "certs --dir DIR --node NAME [--node NAME...]",
		Short: "Make a scenario's CA and a TLS certificate and key for each node",
		Long: `certs writes into DIR (mode 0700) a CA, ca.crt and ca.key, unless both are
there already, and for each node NAME.crt and NAME.key signed by it, good for
TLS server and client authentication, with NAME as common name and DNS name
(and IP address, if NAME is one). Copy ca.crt and a node's own files to that
node; ca.key stays where nodes are added. It refuses to replace a node's files
unless --force is given.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			files, err := certs.Create(opts)
			for _, f := range files {
				fmt.Fprintln(cmd.OutOrStdout(), f)
			}
			return err
		},
	}
	f := cmd.Flags()
	f.StringVar(&opts.Dir, "dir", "", "directory of the CA and the node files")
	f.StringArrayVar(&opts.Nodes, "node", nil, "node name (letters, digits, '.', '-', '_'); repeat for each node")
	f.IntVar(&opts.Days, "days", 3650, "validity in days (a node certificate ends no later than its CA)")
	f.BoolVar(&opts.Force, "force", false, "replace the files of nodes that have some")
	cmd.MarkFlagRequired("dir")
	cmd.MarkFlagRequired("node")
	return cmd
}
