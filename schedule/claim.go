package schedule

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/blob"

	"github.com/nightshift-jobs/nightshift"
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
	etag, err := r.putClaim(ctx, cont, name, c, "")
	if storage.IsConflict(err) {
		cur, curTag, gerr := r.getClaim(ctx, cont, name)
		switch {
		case storage.IsNotFound(gerr):
			return "duplicate", nil // the other fire gave up and removed it; its host will fire again
		case gerr != nil:
			return "", gerr
		case cur.State == "enqueued":
			return "duplicate", nil
		case r.now().Sub(cur.At) < claimTimeout:
			return "duplicate", nil // another fire is enqueueing it right now
		}
		etag, err = r.putClaim(ctx, cont, name, c, curTag)
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
		_, _ = r.store.Blob.DeleteBlob(dctx, cont, name, &blob.DeleteOptions{AccessConditions: &blob.AccessConditions{
			ModifiedAccessConditions: &blob.ModifiedAccessConditions{IfMatch: to.Ptr(etag)}}})
		return "", err
	}
	c.State = "enqueued"
	if _, err := r.putClaim(ctx, cont, name, c, etag); err != nil {
		r.log.Warn("occurrence enqueued but its claim could not be marked", "job_id", id, "error", err.Error())
	}
	return outcome, nil
}

// putClaim writes a claim: create-only with etag "", else only over that version.
func (r *runner) putClaim(ctx context.Context, cont, name string, c claim, etag azcore.ETag) (azcore.ETag, error) {
	data, err := json.Marshal(c)
	if err != nil {
		return "", err
	}
	mac := &blob.ModifiedAccessConditions{}
	if etag == "" {
		mac.IfNoneMatch = to.Ptr(azcore.ETagAny)
	} else {
		mac.IfMatch = to.Ptr(etag)
	}
	resp, err := r.store.Blob.UploadBuffer(ctx, cont, name, data, &azblob.UploadBufferOptions{
		HTTPHeaders:      &blob.HTTPHeaders{BlobContentType: to.Ptr("application/json")},
		AccessConditions: &blob.AccessConditions{ModifiedAccessConditions: mac},
	})
	if err != nil {
		if storage.IsConflict(err) {
			return "", err
		}
		return "", fmt.Errorf("write claim %s/%s: %w", cont, name, err)
	}
	if resp.ETag == nil {
		return "", nil
	}
	return *resp.ETag, nil
}

func (r *runner) getClaim(ctx context.Context, cont, name string) (*claim, azcore.ETag, error) {
	resp, err := r.store.Blob.DownloadStream(ctx, cont, name, nil)
	if err != nil {
		return nil, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, "", err
	}
	var c claim
	if err := json.Unmarshal(b, &c); err != nil {
		return nil, "", fmt.Errorf("claim %s/%s is not valid JSON: %w", cont, name, err)
	}
	var etag azcore.ETag
	if resp.ETag != nil {
		etag = *resp.ETag
	}
	return &c, etag, nil
}
