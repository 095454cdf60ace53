package nightshift

import (
	"context"

	"github.com/nightshift-jobs/nightshift/envelope"
	"github.com/nightshift-jobs/nightshift/record"
)

// The features a job may use — batches, dedupe keys, claim-checked and sealed args, the
// job-end callback — hook into the execution pipeline (pipeline.go) through one interface,
// feature, in one ordered list the executor builds (newFeatures). At each hook point the
// pipeline calls every feature in list order; a feature the job does not use does
// nothing. The pipeline itself has no branch for any feature
// (docs/architecture.md "Where to add a feature").

// feature is one feature's hooks on the pipeline.
type feature interface {
	// admit runs after the pipeline's own admission (decoded, registered kind, not
	// stale, due, attempts left) and before the job runs. ok false ends the delivery with
	// out: a refusal, a deferral or a storage failure; the features after it are not
	// called.
	admit(ctx context.Context, a *attempt) (out outcome, ok bool)
	// ended runs when the job's end is recorded (e says how). An error fails the
	// invocation and the features after it are not called: the host delivers the message
	// again, admit finds the end recorded and calls ended again with endRedelivery, so a
	// hook that returns errors must be idempotent.
	ended(ctx context.Context, e jobEnd) error
}

// endVia says which part of the pipeline recorded a job's end.
type endVia int

const (
	// endAttempt: the attempt that ran wrote its final status (succeeded, cancelled, or
	// dead, its message on its way to the poison queue).
	endAttempt endVia = iota
	// endDeadLetter: RunDeadLetter recorded the dead letter and the dead status.
	endDeadLetter
	// endRedelivery: a delivery of a job whose end (of the same life) is recorded
	// already; the hooks run again for what a crash or a failed hook left undone.
	endRedelivery
)

// jobEnd is a job's end as the end hooks see it.
type jobEnd struct {
	env   *envelope.Envelope
	state record.State
	// st is the status recorded (what HandlerOptions.OnJobEnd receives); nil for a job
	// cancelled while running, whose status the cancellation wrote.
	st  *record.Status
	via endVia
}

// newFeatures returns the features in the order their hooks run. At the end: a
// checkpointed job's checkpoint is deleted (failures logged), the job's batch counts its
// end (its failure fails the invocation), its dedupe key is freed and claim-checked args
// of a succeeded job are deleted (failures logged), a workflow step's end is recorded in
// its workflow and the steps it made ready are enqueued, then the callback of a
// workflow that ended is asked for (workflow.go; their failures fail the invocation), and last the job-end callback is asked for (its failure fails the
// invocation). At admission a job of a paused queue or kind is held first (pause.go),
// then a redelivery of a job that checkpointed under the same message is renewed
// (checkpoint.go), then a batch's finalizer is claimed, then the args are resolved, then
// a concurrency slot is taken (Limits; it reads the key from the resolved args), released
// when the delivery ends.
func newFeatures(x *executor, onJobEnd func(ctx context.Context, env *envelope.Envelope, st *record.Status) error, onWorkflowEnd func(ctx context.Context, w *record.Workflow) error) []feature {
	return []feature{&pauses{x: x, check: PauseCheck}, &checkpoints{x: x}, &batches{x: x}, uniqueKeys{x: x}, payloads{x: x}, concurrency{x: x}, workflows{x: x, onEnd: onWorkflowEnd}, callbacks{onJobEnd: onJobEnd}}
}

// admitFeatures runs the features' admit hooks in order; the first that ends the
// delivery ends it.
func (x *executor) admitFeatures(ctx context.Context, a *attempt) (outcome, bool) {
	for _, f := range x.features {
		if out, ok := f.admit(ctx, a); !ok {
			return out, false
		}
	}
	return outcome{}, true
}

// ended runs the features' end hooks in order, stopping at the first error.
func (x *executor) ended(ctx context.Context, e jobEnd) error {
	for _, f := range x.features {
		if err := f.ended(ctx, e); err != nil {
			return err
		}
	}
	return nil
}

// admitAll is the admit hook of a feature that has nothing to check before a job runs.
type admitAll struct{}

func (admitAll) admit(context.Context, *attempt) (outcome, bool) { return outcome{}, true }

// callbacks is the job-end callback (HandlerOptions.OnJobEnd; package callback provides
// one), for jobs whose envelope asks for one. A succeeded job's callback is asked for when
// its status is written; a dead job's when its dead letter is recorded (the status then
// names the dead letter), not when the attempt sends it to the poison queue; a cancelled
// job has none. An error fails the invocation, so the redelivery asks again (the callback
// job's id is fixed, so one already enqueued is not sent twice).
type callbacks struct {
	admitAll
	onJobEnd func(ctx context.Context, env *envelope.Envelope, st *record.Status) error
}

func (c callbacks) ended(ctx context.Context, e jobEnd) error {
	if e.env.Callback == nil || c.onJobEnd == nil {
		return nil
	}
	switch {
	case e.state == record.StateSucceeded:
	case e.state == record.StateDead && e.via != endAttempt:
	default:
		return nil
	}
	return c.onJobEnd(ctx, e.env, e.st)
}
