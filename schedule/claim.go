package schedule

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"time"

	"github.com/nightshift-jobs/nightshift"
	"github.com/nightshift-jobs/nightshift/internal/store"
	"github.com/nightshift-jobs/nightshift/storage"
)

// ClaimPrefix starts the blob names of occurrence claims in the schedule container:
// fired/<name lower-cased>/<occurrence unix seconds>.json. The maintenance job deletes
// them after the status retention.
const ClaimPrefix = "fired/"

// claimTimeout is how long a claim without an enqueued job blocks other fires of the
// same occurrence; after it, a later fire (the host's past-due catch-up after a crash)
// takes the claim over and enqueues.
const claimTimeout = time.Minute

// ClaimBlob is the claim blob name of an occurrence.
func ClaimBlob(name string, occurrence time.Time) string {
	return ClaimPrefix + strings.ToLower(name) + "/" + strconv.FormatInt(occurrence.Unix(), 10) + ".json"
}

// claim records that a fire is enqueueing an occurrence's job.
type claim struct {
	JobID        string    `json:"job_id"`
	Occurrence   time.Time `json:"occurrence"`
	Trigger      string    `json:"trigger"`
	State        string    `json:"state"` // "claimed", then "enqueued"
	At           time.Time `json:"at"`
	InvocationID string    `json:"invocation_id,omitempty"`
}

// enqueueOnce enqueues the occurrence's job unless another fire did or is doing it. The
// job id alone would stop a second run only when the duplicate arrives after the first
// one has a status; fires racing each other (two hosts, a retried invocation) could both
// enqueue and both messages could be delivered at once. So each fire first creates the
// occurrence's claim blob (If-None-Match: *): the loser does nothing. A claim left by a
// fire that crashed before enqueueing is taken over after claimTimeout.
func (r *runner) enqueueOnce(ctx context.Context, d Recurring, occ time.Time, id, trigger, invID string) (string, error) {
	cont := r.store.Layout.ScheduleContainer()
	name := ClaimBlob(d.Name, occ)
	c := claim{JobID: id, Occurrence: occ.UTC(), Trigger: trigger, State: "claimed", At: r.now().UTC(), InvocationID: invID}
	etag, err := r.store.PutJSON(ctx, cont, name, c, "")
	if storage.IsConflict(err) {
		cur, curTag, gerr := r.getClaim(ctx, cont, name)
		switch {
		case errors.Is(gerr, storage.ErrNotFound):
			return "duplicate", nil // the other fire gave up and removed it; its host will fire again
		case gerr != nil:
			return "", gerr
		case cur.State == "enqueued":
			return "duplicate", nil
		case r.now().Sub(cur.At) < claimTimeout:
			return "duplicate", nil // another fire is enqueueing it right now
		}
		etag, err = r.store.PutJSON(ctx, cont, name, c, curTag)
		if storage.IsConflict(err) {
			return "duplicate", nil
		}
	}
	if err != nil {
		return "", err
	}
	args, err := d.JobArgs()
	if err != nil {
		return "", err
	}
	_, err = r.client.EnqueueRaw(ctx, d.JobKind(), args, &nightshift.EnqueueOptions{
		JobID: id, Queue: d.Queue, MaxAttempts: d.MaxAttempts, Timeout: d.Timeout,
		Meta: map[string]string{MetaRecurring: d.Name, MetaOccurrence: occ.UTC().Format(time.RFC3339), MetaTrigger: trigger},
	})
	outcome := "enqueued"
	switch {
	case isExists(err):
		outcome = "duplicate" // enqueued by a fire that crashed before marking its claim
	case err != nil:
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		_ = r.store.Store().Delete(dctx, cont, name, store.DeleteOptions{IfMatch: etag})
		return "", err
	}
	c.State = "enqueued"
	if _, err := r.store.PutJSON(ctx, cont, name, c, etag); err != nil {
		r.log.Warn("occurrence enqueued but its claim could not be marked", "job_id", id, "error", err.Error())
	}
	return outcome, nil
}

func (r *runner) getClaim(ctx context.Context, cont, name string) (*claim, storage.ETag, error) {
	var c claim
	etag, err := r.store.GetJSON(ctx, cont, name, &c)
	if err != nil {
		return nil, "", err
	}
	return &c, etag, nil
}
