package main

import (
	"errors"
	"fmt"
	"io"
)

func adminCluster(op string, args []string, stdout, stderr io.Writer) error {
	fs, a := apiCommand("admin cluster "+op, stderr, false)
	to := fs.String("to", "", "transfer: the node to hand leadership to (default: the most up-to-date follower)")
	pos, err := parseInterleaved(fs, args)
	if err != nil {
		return err
	}
	ctx, cancel := ctx30()
	defer cancel()
	if op == "snapshot" {
		secs, err := a.client().Snapshot(ctx)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "snapshot written in %.3fs\n", secs)
		return nil
	}
	if op == "transfer" {
		if len(pos) != 0 {
			return errors.New("transfer takes no arguments; use --to ID")
		}
		if err := a.client().TransferLeadership(ctx, *to); err != nil {
			return err
		}
		fmt.Fprintln(stdout, "leadership transferred")
		return nil
	}
	if len(pos) != 1 {
		return errors.New("want exactly one node ID")
	}
	if err := a.client().RemoveServer(ctx, pos[0]); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "removed %s from the cluster\n", pos[0])
	return nil
}
