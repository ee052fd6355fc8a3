package main

import (
	"fmt"
	"io"
	"strings"
)

const adminUsage = `usage:
  lifeline admin domain add NAME --destination HOST:PORT [--destination ...] [--org ORG]
  lifeline admin domain set NAME --destination HOST:PORT [--destination ...] [--org ORG]
  lifeline admin domain remove NAME
  lifeline admin domain list [--json]
  lifeline admin queue list [--domain D] [--sender S] [--recipient R]
                           [--state held|deferred|new] [--older-than 4h] [--newer-than 30m] [--json]
  lifeline admin queue show ID [--json]
  lifeline admin queue flush
  lifeline admin queue hold|release|retry ID
  lifeline admin queue delete ID [--dsn]
  lifeline admin cluster transfer [--to ID]
  lifeline admin cluster remove ID
  lifeline admin cluster snapshot
  lifeline admin log search [--id ID] [--sender A] [--recipient A] [--status S]
                            [--since 2h] [--until TIME] [--limit N] [--json|--csv]
`

const accountsUsage = `  lifeline admin org add NAME [--require-totp yes|no]
  lifeline admin org set NAME --require-totp yes|no
  lifeline admin org list [--json]
  lifeline admin user add EMAIL --org ORG --password-file FILE [--role admin] [--name NAME]
  lifeline admin user set EMAIL [--password-file FILE] [--role user|admin] [--name NAME]
                          [--disable|--enable] [--reset-totp] [--groups A,B] [--require-totp yes|no]
  lifeline admin user list [--org ORG] [--json]
  lifeline admin partner add EMAIL --org ORG [--org ORG...] --password-file FILE [--name NAME]
  lifeline admin partner set EMAIL [--org ORG...] [--password-file FILE] [--disable|--enable]
  lifeline admin partner list [--json]
  lifeline admin audit [--org ORG] [--limit N] [--json]
`

const consoleUsage = `  lifeline admin domain test NAME [--destination HOST:PORT] [--json]
  lifeline admin domain requests [--json]
  lifeline admin domain approve|refuse NAME
  lifeline admin alerts show ORG [--json]
  lifeline admin alerts set ORG [--enable|--disable] [--to admin|tech|both] [--via email|sms|both]
                         [--repeat 4h] [--admin-name N] [--admin-email E] [--admin-mobile +44...]
                         [--tech-name N] [--tech-email E] [--tech-mobile +44...]
  lifeline admin alerts gateway [--url URL [--user U] [--password-file FILE] [--from NAME]] [--json]
  lifeline admin user import FILE --org ORG [--welcome]
  lifeline admin user welcome EMAIL... [--reset]
  lifeline admin user delete EMAIL
  lifeline admin audit verify [--json]
`

func runAdmin(args []string, stdout, stderr io.Writer) error {
	if ok, err := runConsole(args, stdout, stderr); ok {
		return err
	}
	if ok, err := runAccounts(args, stdout, stderr); ok {
		return err
	}
	if len(args) < 2 {
		fmt.Fprint(stderr, adminUsage+accountsUsage+consoleUsage)
		return errUsage
	}
	switch args[0] + " " + args[1] {
	case "domain add", "domain set":
		return adminDomainPut(args[1] == "add", args[2:], stdout, stderr)
	case "domain remove":
		return adminDomainRemove(args[2:], stdout, stderr)
	case "domain list":
		return adminDomainList(args[2:], stdout, stderr)
	case "queue list":
		return adminQueueList(args[2:], stdout, stderr)
	case "queue show":
		return adminQueueShow(args[2:], stdout, stderr)
	case "queue flush", "queue hold", "queue release", "queue retry", "queue delete":
		return adminQueueOp(args[1], args[2:], stdout, stderr)
	case "log search":
		return adminLog(args[1:], stdout, stderr)
	case "cluster transfer", "cluster remove", "cluster snapshot":
		return adminCluster(args[1], args[2:], stdout, stderr)
	case "snapshot save", "snapshot restore":
		return adminSnapshot(args[1], args[2:], stdout, stderr)
	}
	fmt.Fprintf(stderr, "lifeline admin: unknown command %q\n%s", strings.Join(args[:2], " "), adminUsage+accountsUsage+consoleUsage)
	return errUsage
}

// runAccounts handles the account verbs of `lifeline admin`; ok is false
// for any other verb.
func runAccounts(args []string, stdout, stderr io.Writer) (ok bool, err error) {
	if len(args) >= 1 && args[0] == "audit" {
		return true, adminAudit(args[1:], stdout, stderr)
	}
	if len(args) < 2 {
		return false, nil
	}
	switch args[0] + " " + args[1] {
	case "org add", "org set", "org list":
		return true, adminOrg(args[1], args[2:], stdout, stderr)
	case "user add", "partner add":
		return true, adminUserAdd(args[0] == "partner", args[2:], stdout, stderr)
	case "user set", "partner set":
		return true, adminUserSet(args[0] == "partner", args[2:], stdout, stderr)
	case "user list", "partner list":
		return true, adminUserList(args[0] == "partner", args[2:], stdout, stderr)
	}
	return false, nil
}

// runConsole handles the console's verbs of `lifeline admin`; ok is false
// for any other verb.
func runConsole(args []string, stdout, stderr io.Writer) (ok bool, err error) {
	if len(args) < 2 {
		return false, nil
	}
	switch args[0] + " " + args[1] {
	case "domain test":
		return true, adminDomainTest(args[2:], stdout, stderr)
	case "domain requests":
		return true, adminDomainRequests(args[2:], stdout, stderr)
	case "domain approve", "domain refuse":
		return true, adminDomainDecide(args[1] == "approve", args[2:], stdout, stderr)
	case "alerts show", "alerts set":
		return true, adminAlerts(args[1], args[2:], stdout, stderr)
	case "alerts gateway":
		return true, adminGateway(args[2:], stdout, stderr)
	case "user import":
		return true, adminUserImport(args[2:], stdout, stderr)
	case "user welcome":
		return true, adminUserWelcome(args[2:], stdout, stderr)
	case "user delete":
		return true, adminUserDelete(args[2:], stdout, stderr)
	case "audit verify":
		return true, adminAuditVerify(args[2:], stdout, stderr)
	}
	return false, nil
}
