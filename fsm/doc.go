// Package fsm is Lifeline's replicated state machine: the command types that
// travel through the Raft log, their deterministic application to a bbolt
// store, the read-side queries, and streaming snapshot and restore.
//
// Nothing here reads the clock or does I/O beyond its own store: every time,
// ID and random choice arrives inside a command, so each node that applies
// the same log reaches the same state (docs/design.md §3.2).
package fsm
