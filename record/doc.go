// Package record holds nightshift's job records and the rules that change them: a job's
// Status with its State, Progress, Result and logs; the DeadLetter of a dead job or an
// unusable poison message with its DeadReason; a Batch with its shards and manifest; and
// the status transitions (Queued, Running, Ended, DeadLettered, Cancelled, …), each
// saying when it applies (Status.Supersedes) and which fields of the current record it
// keeps.
//
// The package depends on nothing but the standard library and package envelope: the
// client, the HTTP API, the CLI and users' tools read records with it without pulling a
// storage driver. Package storage reads and writes them (docs/storage-layout.md says
// where).
package record
