// Command lifeline runs and manages Lifeline nodes. The table of verbs
// below drives both dispatch and the help; each verb, in the cmd_*.go file
// named for what it manages, parses its flags and hands over to the node
// package or the API client, which makes every HTTP call.
package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
)

// errUsage is returned by a verb that has already told the operator how to
// call it; the command exits 2 without another message.
var errUsage = errors.New("usage")

// A verb is one command of the CLI. A row without run is the heading of the
// verbs below it: the help shows its summary above them.
type verb struct {
	// path is the verb's words after "lifeline", such as "admin domain add".
	path string
	// args is what the verb takes after its path: arguments and flags.
	// A newline starts a continuation line.
	args string
	// summary says in a line what the verb does.
	summary string
	run     runFunc
}

type runFunc = func(args []string, stdout, stderr io.Writer) error

// bind makes a verb of a function that serves several, such as add and
// set, told apart by its first argument.
func bind[T any](f func(T, []string, io.Writer, io.Writer) error, which T) runFunc {
	return func(args []string, stdout, stderr io.Writer) error { return f(which, args, stdout, stderr) }
}

// verbs is every command of the CLI, in the order the help lists them.
// Dispatch and help both read it, so a verb cannot be callable yet missing
// from the help, nor listed and unreachable.
func verbs() []verb {
	return []verb{
		{"", "", "email continuity on a replicated spool", nil},
		{"node", "[flags]", "run one node (lifeline node -h for its flags)",
			func(args []string, _, stderr io.Writer) error { return runNode(args, stderr) }},
		{"dev", "[flags]", "a local cluster on loopback with demo data (lifeline dev -h for its flags)", runDev},
		{"status", "[--json]", "the cluster and the queue as one node sees them", runStatus},

		{"admin", "", "management through the JSON API of any node", nil},

		{"admin domain", "", "the protected domains and where their mail goes", nil},
		{"admin domain add", "NAME --destination HOST:PORT [--destination ...] [--org ORG] [--json]",
			"protect a domain; several destinations are tried in the order given", bind(adminDomainPut, true)},
		{"admin domain set", "NAME --destination HOST:PORT [--destination ...] [--org ORG] [--json]",
			"replace a domain's destinations (its organisation stays unless --org is given)", bind(adminDomainPut, false)},
		{"admin domain remove", "NAME", "stop protecting a domain", adminDomainRemove},
		{"admin domain list", "[--json]", "every protected domain, its destinations and whether it is spooling", adminDomainList},
		{"admin domain test", "NAME [--destination HOST:PORT] [--json]",
			"greeting and EHLO of the domain's destinations, from the node; exit 1 if one fails", adminDomainTest},
		{"admin domain requests", "[--json]", "the domains organisations asked for, waiting for approval", adminDomainRequests},
		{"admin domain approve", "NAME", "protect a requested domain: its mail is accepted from now on", bind(adminDomainDecide, true)},
		{"admin domain refuse", "NAME", "refuse a requested domain", bind(adminDomainDecide, false)},

		{"admin queue", "", "the spooled messages", nil},
		{"admin queue list", "[--domain D] [--sender S] [--recipient R]\n[--state held|deferred|new] [--older-than 4h] [--newer-than 30m] [--json]",
			"the queued messages that match every filter given", adminQueueList},
		{"admin queue show", "ID [--json]", "one message: every recipient, its attempts and replies", adminQueueShow},
		{"admin queue flush", "", "retry everything now, like postqueue -f", bind(adminQueueOp, "flush")},
		{"admin queue hold", "ID", "keep a message from delivery until it is released", bind(adminQueueOp, "hold")},
		{"admin queue release", "ID", "let a held message be delivered again", bind(adminQueueOp, "release")},
		{"admin queue retry", "ID", "try to deliver a message now", bind(adminQueueOp, "retry")},
		{"admin queue delete", "ID [--dsn]", "remove a message; --dsn returns it to its sender with a failure notice", bind(adminQueueOp, "delete")},

		{"admin cluster", "", "the nodes of the cluster", nil},
		{"admin cluster transfer", "[--to ID]", "hand leadership to the node ID, or to the most up-to-date follower", bind(adminCluster, "transfer")},
		{"admin cluster remove", "ID", "take a node that is gone for good out of the voters", bind(adminCluster, "remove")},
		{"admin cluster snapshot", "", "make the node write a Raft snapshot now", bind(adminCluster, "snapshot")},

		{"admin log", "", "what every node did with every message", nil},
		{"admin log search", "[--id ID] [--sender A] [--recipient A] [--status S]\n[--since 2h] [--until TIME] [--limit N] [--json|--csv]",
			"the newest entries of every node's message log that match", adminLogSearch},

		{"admin snapshot", "", "backups of the whole cluster", nil},
		{"admin snapshot save", "FILE [--json]",
			"a backup of the cluster: its replicated state and every message body it references\n(a tar file; gzipped when FILE ends in .gz)", bind(adminSnapshot, "save")},
		{"admin snapshot restore", "FILE [--force] [--json]",
			"replace the whole cluster's state with a backup; --force when the cluster\nalready holds mail or domains", bind(adminSnapshot, "restore")},

		{"admin org", "", "organisations", nil},
		{"admin org add", "NAME [--require-totp yes|no] [--json]", "create an organisation", bind(adminOrg, "add")},
		{"admin org set", "NAME --require-totp yes|no [--json]", "whether every user of an organisation must use two-step sign-in", bind(adminOrg, "set")},
		{"admin org list", "[--json]", "every organisation", bind(adminOrg, "list")},

		{"admin user", "", "the logins of an organisation's users and admins", nil},
		{"admin user add", "EMAIL --org ORG --password-file FILE [--role user|admin] [--name NAME] [--json]",
			"create a user or an org admin", bind(adminUserAdd, false)},
		{"admin user set", "EMAIL [--password-file FILE] [--role user|admin] [--name NAME]\n[--disable|--enable] [--reset-totp] [--groups A,B] [--require-totp yes|no] [--json]",
			"change a login; flags not given stay as they are", bind(adminUserSet, false)},
		{"admin user list", "[--org ORG] [--json]", "the logins of every organisation, or of one", bind(adminUserList, false)},
		{"admin user import", "FILE --org ORG [--welcome] [--json]",
			"add the users of a CSV file (- for standard input): every line or none", adminUserImport},
		{"admin user welcome", "EMAIL... [--reset]", "email one-time password links: a welcome, or with --reset a password reset", adminUserWelcome},
		{"admin user delete", "EMAIL", "remove a login", adminUserDelete},

		{"admin partner", "", "partners: logins that manage several organisations", nil},
		{"admin partner add", "EMAIL --org ORG [--org ORG...] --password-file FILE [--name NAME] [--json]",
			"create a partner", bind(adminUserAdd, true)},
		{"admin partner set", "EMAIL [--org ORG...] [--password-file FILE] [--name NAME]\n[--disable|--enable] [--reset-totp] [--json]",
			"change a partner; --org replaces the organisations it manages", bind(adminUserSet, true)},
		{"admin partner list", "[--json]", "every partner", bind(adminUserList, true)},

		{"admin alerts", "", "spooling alerts to an organisation's contacts", nil},
		{"admin alerts show", "ORG [--json]", "an organisation's alert settings", bind(adminAlerts, "show")},
		{"admin alerts set", "ORG [--enable|--disable] [--to admin|tech|both] [--via email|sms|both]\n[--repeat 4h] [--admin-name N] [--admin-email E] [--admin-mobile +44...]\n[--tech-name N] [--tech-email E] [--tech-mobile +44...] [--json]",
			"change an organisation's alert settings; flags not given stay as they are", bind(adminAlerts, "set")},
		{"admin alerts gateway", "[--url URL [--user U] [--password-file FILE] [--from NAME]] [--json]",
			"the SMS gateway: shown, or replaced with --url (--url none removes it)", adminGateway},

		{"admin audit", "[--org ORG] [--limit N] [--json]", "the newest audit entries, of every organisation or of one", adminAudit},
		{"admin audit verify", "[--json]", "recompute the audit hash chain; exit 1 if it is broken", adminAuditVerify},
	}
}

// apiNote ends every help: it applies to status and to every admin verb.
const apiNote = `status and admin talk to any node's JSON API: --server URL and --token TOKEN,
or LIFELINE_SERVER and LIFELINE_TOKEN.
`

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run dispatches args to the verb whose path is the longest run of leading
// words the table knows, and returns the exit code: 0 on success, 1 when the
// verb failed, 2 when it was called wrongly.
func run(args []string, stdout, stderr io.Writer) int {
	vs := verbs()
	if len(args) > 0 && args[0] == "help" {
		path, rest := match(vs, args[1:])
		if len(rest) > 0 {
			return unknown(vs, path, rest[0], stderr)
		}
		printHelp(stdout, vs, path)
		return 0
	}
	path, rest := match(vs, args)
	v, isVerb := lookup(vs, path)
	isGroup := hasBelow(vs, path)
	if isGroup && len(rest) > 0 && isHelp(rest[0]) {
		printHelp(stdout, vs, path)
		return 0
	}
	if !isVerb || v.run == nil {
		if len(rest) == 0 {
			printHelp(stderr, vs, path)
			return 2
		}
		return unknown(vs, path, rest[0], stderr)
	}
	if err := v.run(rest, stdout, stderr); err != nil {
		if err == errUsage {
			return 2
		}
		fmt.Fprintf(stderr, "lifeline %s: %v\n", args[0], err)
		return 1
	}
	return 0
}

func isHelp(arg string) bool {
	switch arg {
	case "help", "-h", "-help", "--help":
		return true
	}
	return false
}

// unknown reports a word that names no verb below path, with the help of
// path: the nearest the operator came to a verb.
func unknown(vs []verb, path, word string, stderr io.Writer) int {
	fmt.Fprintf(stderr, "%s: unknown command %q\n\n", strings.TrimSpace("lifeline "+path), word)
	printHelp(stderr, vs, path)
	return 2
}

// match returns the longest path of the table that args begin with, and
// the arguments after it.
func match(vs []verb, args []string) (path string, rest []string) {
	for i, word := range args {
		next := strings.TrimSpace(path + " " + word)
		if !known(vs, next) {
			return path, args[i:]
		}
		path = next
	}
	return path, nil
}

func lookup(vs []verb, path string) (verb, bool) {
	for _, v := range vs {
		if v.path == path {
			return v, true
		}
	}
	return verb{}, false
}

// known tells whether path is a row of the table or the beginning of one.
func known(vs []verb, path string) bool {
	for _, v := range vs {
		if v.path == path || strings.HasPrefix(v.path, path+" ") {
			return true
		}
	}
	return false
}

// hasBelow tells whether some row's path continues path.
func hasBelow(vs []verb, path string) bool {
	for _, v := range vs {
		if v.path != path && below(v.path, path) {
			return true
		}
	}
	return false
}

// below tells whether p is path or lies under it.
func below(p, path string) bool {
	return path == "" || p == path || strings.HasPrefix(p, path+" ")
}

// printHelp lists every verb at or below path, under path's heading.
func printHelp(w io.Writer, vs []verb, path string) {
	name := strings.TrimSpace("lifeline " + path)
	if v, ok := lookup(vs, path); ok && v.summary != "" {
		fmt.Fprintf(w, "%s: %s\n", name, v.summary)
	}
	fmt.Fprintf(w, "\nusage:\n")
	for _, v := range vs {
		if v.run == nil || !below(v.path, path) {
			continue
		}
		cmd := "  lifeline " + v.path
		lines := strings.Split(v.args, "\n")
		if lines[0] != "" {
			cmd += " " + lines[0]
		}
		fmt.Fprintln(w, cmd)
		for _, l := range lines[1:] {
			fmt.Fprintf(w, "%*s%s\n", len("  lifeline "+v.path+" "), "", l)
		}
		for _, l := range strings.Split(v.summary, "\n") {
			fmt.Fprintf(w, "      %s\n", l)
		}
	}
	fmt.Fprintf(w, "\n%s", apiNote)
}
