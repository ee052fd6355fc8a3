// Package backup is the format of a Lifeline backup, which the node writes
// and reads (node/backup.go), the JSON API streams and the CLI checks.
//
// A backup is a tar file:
//
//	lifeline-backup.json   the manifest (Manifest), first
//	state.snap             the replicated state, in the stream format of
//	                       fsm.Store.WriteSnapshot / Restore
//	blobs/<sha256>         every message body the state references
package backup

import (
	"errors"
	"time"
)

// Format is the layout version this release writes and reads.
const Format = 1

// The names of a backup's entries, in the order they come.
const (
	ManifestName = "lifeline-backup.json"
	StateName    = "state.snap"
	BodyDir      = "blobs/"
)

// Manifest opens every backup file: what it holds and where it came from.
type Manifest struct {
	// Format is the version of the backup layout (Format).
	Format       int       `json:"format"`
	Created      time.Time `json:"created"`
	Node         string    `json:"node"`
	AppliedIndex uint64    `json:"applied_index"`
	Messages     int       `json:"messages"`
	Domains      int       `json:"domains"`
	Bodies       int       `json:"bodies"`
	BodyBytes    int64     `json:"body_bytes"`
	// MissingBodies are referenced by the state but could be read neither
	// here nor from a peer when the backup was taken.
	MissingBodies []string `json:"missing_bodies,omitempty"`
}

// RestoreReport answers POST /api/v1/snapshot/restore.
type RestoreReport struct {
	Backup   Manifest `json:"backup"`
	Messages int      `json:"messages"`
	Domains  int      `json:"domains"`
	Bodies   int      `json:"bodies_restored"`
	// MissingBodies are spooled messages whose body the backup lacked.
	MissingBodies []string `json:"missing_bodies,omitempty"`
	Seconds       float64  `json:"seconds"`
}

// ErrConflict is returned when a restore would replace a state that
// already holds mail or domains and the operator did not insist.
var ErrConflict = errors.New("the cluster already holds state")

// ErrUnusable is returned for a file that is not a usable backup.
var ErrUnusable = errors.New("not a usable Lifeline backup")
