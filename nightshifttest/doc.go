// Package nightshifttest is nightshift's test kit: it runs job code in an ordinary go
// test, without Azure, Azurite or a Functions host. It works at two sizes, and every
// example of the package runs a real job through it.
//
// # One attempt: Work and Run
//
// Work runs one attempt of a worker the way the nightshift handler runs it, with a fake
// job context: the args go through JSON exactly as a queued envelope's args are decoded
// (an unexported field, or one tagged `json:"-"`, arrives empty as it would from a
// queue), the job gets its id, attempt, replay, meta and a Logger whose lines are
// captured and redacted like the handler's (nightshift.Secret, nightshift.Sensitive and
// `nightshift:"sensitive"` fields read [redacted]), progress reports are recorded, the
// attempt's timeout applies, a panic is recovered, and the result is encoded as the
// status would store it. WorkOptions set the job context (Attempt, MaxAttempts, Replay,
// Meta, …); the Result says what the handler would record: the error class, whether the
// job would be retried (and after which delay) or be dead, the log lines and every
// progress report.
//
//	func TestSendEmail(t *testing.T) {
//		res, err := nightshifttest.Work(t.Context(), myapp.SendEmailWorker{}, myapp.SendEmailArgs{To: "ann@example.com"}, nil)
//		if err != nil {
//			t.Fatal(err)
//		}
//		if res.Err != nil {
//			t.Fatalf("send_email failed (%s): %v\nlogs: %q", res.Class, res.Err, res.Logs)
//		}
//	}
//
// Run does the same for a kind registered on an application's own Registry, with the args
// as raw JSON, such as a producer in another language sends them.
//
// Nothing is stored by Work and Run: JobClient, StartBatch and BatchChildren inside the
// job need WorkOptions.Client (a client on test storage); without one JobClient returns
// nil and the other two return an error.
//
// # A whole app in memory: NewApp and Drain
//
// NewApp serves an application's Registry with the real handler on in-memory storage,
// which has the semantics of Azure Storage (ETags, visibility, dequeue counts, poison
// queues). App.Client enqueues and reads jobs; App.Drain plays the Functions host's queue
// triggers until nothing is left to run, so retries, dead letters, replays, batches,
// unique jobs and jobs enqueued by jobs happen as in production. AppOptions.Features
// installs what a handler's main installs on its nightshift.App, such as callbacks
// (callback.Feature); App.Storage is that storage, App.Jobs every job it holds.
//
//	app, err := nightshifttest.NewApp(myapp.Registry(), nil)
//	if err != nil {
//		t.Fatal(err)
//	}
//	res, err := app.Client.Enqueue(ctx, myapp.ImportArgs{Rows: rows}, nil)
//	if err != nil {
//		t.Fatal(err)
//	}
//	if _, err := app.Drain(ctx); err != nil {
//		t.Fatal(err)
//	}
//
// # Assertions: Require
//
// In the style of River's rivertest, the Require helpers check what an App holds and fail
// the test (TB, which a *testing.T satisfies) with a message that lists what it does
// hold:
//
//	st := nightshifttest.RequireSucceeded(ctx, t, app, res.JobID) // the status, with the result
//	nightshifttest.RequireEnqueued(ctx, t, app, "notify", &nightshifttest.RequireOptions{Args: myapp.NotifyArgs{To: "ann"}})
//	dl := nightshifttest.RequireDied(ctx, t, app, badID) // the dead-letter record: reason, errors
//
// RequireEnqueued, RequireEnqueuedN and RequireNotEnqueued count the jobs of a kind,
// narrowed by RequireOptions (args, meta, state); RequireSucceeded and RequireDied check
// how one job ended.
//
// docs/testing.md describes what runs as in production and what does not.
package nightshifttest
