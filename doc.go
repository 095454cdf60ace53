// Package nightshift runs typed Go background jobs on Azure Functions.
//
// An application in any language puts a job envelope (package envelope) on an Azure
// Storage queue; the Functions host calls the nightshift custom handler, which runs the Go
// worker registered for the job's kind. Results and statuses go to Blob storage; failures
// are retried with exponential backoff; hopeless jobs end in the poison queue and a durable
// dead-letter record. docs/semantics.md describes exactly what happens to a job;
// docs/envelope.md and docs/storage-layout.md describe the message and the records;
// docs/architecture.md the packages and the path of a job through them.
//
// # Kinds and workers
//
// A kind is an args type, whose Kind method names it (JobArgs), and a Worker for it.
// The worker gets a *Job: its ID, Args (decoded from the envelope's JSON), Attempt and
// MaxAttempts, Replay, DequeueCount, EnqueuedAt, Meta, BatchID and ParentID, a Logger
// whose lines are kept in the job's status, and Job.Progress to report how far it got.
// It returns a result (any JSON value, or Bytes for raw bytes with a content type) or an
// error:
//
//	type ResizeArgs struct {
//		Blob string `json:"blob"`
//	}
//
//	func (ResizeArgs) Kind() string { return "resize" }
//
//	func resize(ctx context.Context, job *nightshift.Job[ResizeArgs]) (any, error) {
//		job.Logger.Info("resizing", "blob", job.Args.Blob)
//		return map[string]string{"thumb": job.Args.Blob + ".thumb"}, nil
//	}
//
// # Registry and Serve
//
// A Registry maps kinds to workers with their WorkerOptions (Timeout, MaxAttempts,
// Backoff: ExponentialBackoff, ConstantBackoff, DefaultBackoff). Serve runs the custom
// handler until ctx ends, reading its settings from the environment (ServeOptions;
// docs/configuration.md); NewHandler builds the Handler for another server:
//
//	reg := nightshift.NewRegistry()
//	nightshift.AddWorkerFunc(reg, resize, &nightshift.WorkerOptions{MaxAttempts: 5})
//	err := nightshift.Serve(ctx, reg, nil)
//
// The handler binary in handler/ shows a complete one, with the HTTP API (package
// httpapi), recurring and delayed jobs (package schedule) and callbacks (package
// callback).
//
// # Client
//
// A Client (NewClientFromEnv, NewClient) enqueues jobs (Client.Enqueue, EnqueueRaw,
// EnqueueMany with EnqueueOptions: delay, timeout, attempts, dedupe key, Priority,
// callback, meta) and follows them: Client.Status, Wait, Result, ResultBytes, Logs,
// Cancel, ListJobs, QueueDepths, DeadLetters and Replay. Inside a job, JobClient returns
// the handler's client; StartBatch fans out a batch of children with a finalizer, which
// reads them with BatchChildren (docs/batches.md). Jobs with a DedupeKey are unique while
// pending or running; large args are claim-checked (docs/payloads.md).
//
// # Errors
//
// A worker's error is retried with the kind's backoff until MaxAttempts; Permanent (or
// Permanentf) marks one that retrying cannot fix, and the job is dead at once. A panic is
// recovered and recorded as a PanicError with its stack; an attempt that outlives its
// Timeout has its context cancelled and counts as failed. The client's errors wrap
// ErrNotFound, ErrJobExists, ErrDuplicate (a *DuplicateJobError names the holder),
// ErrTerminal, ErrNotFinished, ErrNotDead and ErrPayloadTooLarge.
//
// # Sensitive data
//
// A Secret field of job args reaches the worker, but reads Redacted ("[redacted]") when
// logged or formatted; Sensitive wraps any value for a log attribute; a field tagged
// `nightshift:"sensitive"` (TagSensitive) is redacted in logged structs and dead-letter
// records. docs/security.md describes the threat model and docs/encryption.md sealed
// args.
//
// # Testing job code
//
// Package nightshifttest is the test kit. nightshifttest.Work runs one attempt of a
// worker as the handler would, without storage, and returns the result as stored, the
// error class, whether the job would be retried or be dead, the captured (redacted) log
// lines and every progress report. nightshifttest.NewApp runs a whole app in memory (the
// real handler and queues, no Azurite): enqueue, Drain, then assert with
// RequireEnqueued, RequireSucceeded and RequireDied (docs/testing.md). The examples of
// this package run their jobs that way.
package nightshift
