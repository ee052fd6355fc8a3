// Package kit is what Lifeline's tests and measuring programs share to
// drive the product from outside: a launcher of `lifeline node`
// processes, an SMTP client that talks the way sending servers do, a
// load generator built on it, Postfix's smtp-sink as the mail server at
// the other end, and one way to wait for something to become true.
//
// It imports nothing of Lifeline, so any package's tests can use it
// without an import cycle, and what it checks is only what an operator
// or a sending server could see: SMTP replies, HTTP answers, the CLI's
// output and the node's log.
//
// Two layers: Node, Cluster, Session, Load and Poll return errors and take
// contexts, for programs such as e2e/bench and e2e/scale; Proc, Client and
// Wait are the same things bound to a *testing.T, which fail the test
// instead.
package kit
