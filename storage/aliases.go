// Code that moved to package record stays reachable here under its old names while
// the rest of the module moves to record.

package storage

import "github.com/nightshift-jobs/nightshift/record"

// State is record.State.
type State = record.State

// Status is record.Status.
type Status = record.Status

// Progress is record.Progress.
type Progress = record.Progress

// BatchSummary is record.BatchSummary.
type BatchSummary = record.BatchSummary

// CallbackOutcome is record.CallbackOutcome.
type CallbackOutcome = record.CallbackOutcome

// Result is record.Result.
type Result = record.Result

// LogLine is record.LogLine.
type LogLine = record.LogLine

// DeadReason is record.DeadReason.
type DeadReason = record.DeadReason

// DeadLetter is record.DeadLetter.
type DeadLetter = record.DeadLetter

// Transition is record.Transition.
type Transition = record.Transition

// Run is record.Run.
type Run = record.Run

// End is record.End.
type End = record.End

// BatchState is record.BatchState.
type BatchState = record.BatchState

// Batch is record.Batch.
type Batch = record.Batch

// BatchShard is record.BatchShard.
type BatchShard = record.BatchShard

// BatchManifest is record.BatchManifest.
type BatchManifest = record.BatchManifest

// StateQueued is record.StateQueued.
const StateQueued = record.StateQueued

// StateRunning is record.StateRunning.
const StateRunning = record.StateRunning

// StateRetrying is record.StateRetrying.
const StateRetrying = record.StateRetrying

// StateSucceeded is record.StateSucceeded.
const StateSucceeded = record.StateSucceeded

// StateDead is record.StateDead.
const StateDead = record.StateDead

// StateCancelled is record.StateCancelled.
const StateCancelled = record.StateCancelled

// ReasonAttemptsExhausted is record.ReasonAttemptsExhausted.
const ReasonAttemptsExhausted = record.ReasonAttemptsExhausted

// ReasonPermanentError is record.ReasonPermanentError.
const ReasonPermanentError = record.ReasonPermanentError

// ReasonUndecodable is record.ReasonUndecodable.
const ReasonUndecodable = record.ReasonUndecodable

// ReasonUnknownKind is record.ReasonUnknownKind.
const ReasonUnknownKind = record.ReasonUnknownKind

// ReasonHostRetriesExhausted is record.ReasonHostRetriesExhausted.
const ReasonHostRetriesExhausted = record.ReasonHostRetriesExhausted

// MaxLogLines is record.MaxLogLines.
const MaxLogLines = record.MaxLogLines

// MaxLogLineBytes is record.MaxLogLineBytes.
const MaxLogLineBytes = record.MaxLogLineBytes

// MaxInlineResult is record.MaxInlineResult.
const MaxInlineResult = record.MaxInlineResult

// BatchEnqueuing is record.BatchEnqueuing.
const BatchEnqueuing = record.BatchEnqueuing

// BatchRunning is record.BatchRunning.
const BatchRunning = record.BatchRunning

// BatchSucceeded is record.BatchSucceeded.
const BatchSucceeded = record.BatchSucceeded

// BatchFailed is record.BatchFailed.
const BatchFailed = record.BatchFailed

// Queued is record.Queued.
var Queued = record.Queued

// Replayed is record.Replayed.
var Replayed = record.Replayed

// Running is record.Running.
var Running = record.Running

// Claimed is record.Claimed.
var Claimed = record.Claimed

// Ended is record.Ended.
var Ended = record.Ended

// DeadLettered is record.DeadLettered.
var DeadLettered = record.DeadLettered

// Cancelled is record.Cancelled.
var Cancelled = record.Cancelled

// BatchSummarised is record.BatchSummarised.
var BatchSummarised = record.BatchSummarised

// CallbackRecorded is record.CallbackRecorded.
var CallbackRecorded = record.CallbackRecorded

// ChildJobID is record.ChildJobID.
var ChildJobID = record.ChildJobID

// FinalizerJobID is record.FinalizerJobID.
var FinalizerJobID = record.FinalizerJobID
