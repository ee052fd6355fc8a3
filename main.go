// Command lifeline runs and manages Lifeline nodes. Each subcommand parses
// its flags here and hands over to the node package or the API client.
package main

import (
	"fmt"
	"io"
	"os"
)

const usage = `lifeline: email continuity on a replicated spool

usage:
  lifeline node [flags]     run one node (lifeline node -h for flags)
  lifeline dev              a local cluster on loopback with demo data
  lifeline status [--json]  the cluster as one node sees it
  lifeline admin ...        management through the JSON API
                            (--server URL and --token, or LIFELINE_SERVER
                            and LIFELINE_TOKEN)
`

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	var err error
	switch args[0] {
	case "node":
		err = runNode(args[1:], stderr)
	case "dev":
		err = runDev(args[1:], stdout, stderr)
	case "status":
		err = runStatus(args[1:], stdout, stderr)
	case "admin":
		err = runAdmin(args[1:], stdout, stderr)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return 0
	default:
		fmt.Fprintf(stderr, "lifeline: unknown command %q\n\n%s", args[0], usage)
		return 2
	}
	if err != nil {
		if err == errUsage {
			return 2
		}
		fmt.Fprintf(stderr, "lifeline %s: %v\n", args[0], err)
		return 1
	}
	return 0
}
