package nightshift

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nightshift-jobs/nightshift/envelope"
	"github.com/nightshift-jobs/nightshift/record"
	"github.com/nightshift-jobs/nightshift/storage"
)

// Strict decoding (docs/security.md): a queue message whose keys repeat, or
// whose numbers are past their bounds, never runs. It goes to the poison queue and becomes
// an inspectable dead letter whose detail names the field and the bound.
func TestStrictDecodingMessagesEndDeadWithTheFieldNamed(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name, msg, want string
	}{
		// Last-wins would run test.fail; first-wins readers (another language's
		// validator) would see test.add.
		{"duplicate kind", `{"job_id":"dup-kind","kind":"test.add","kind":"test.fail","args":{"A":1,"B":2}}`,
			`envelope field "kind": is a duplicate key`},
		{"duplicate in args", `{"job_id":"dup-args","kind":"test.add","args":{"A":1,"B":2,"A":40}}`,
			`envelope field "args.A": is a duplicate key`},
		// Overflowed to a negative duration before: the attempt timed out at once.
		{"timeout 1e300", `{"job_id":"huge-timeout","kind":"test.add","args":{"A":1,"B":2},"timeout_seconds":1e300}`,
			`envelope field "timeout_seconds": 1e+300 must be at most 604800 seconds (7 days`},
		{"max_attempts 1e300", `{"job_id":"huge-attempts","kind":"test.add","max_attempts":1e300}`,
			`envelope field "max_attempts": 1e300 must be a whole number of at most 100`},
		{"run_at year 9999", `{"job_id":"far-run-at","kind":"test.add","run_at":"9999-01-01T00:00:00Z"}`,
			`envelope field "run_at": 9999-01-01T00:00:00Z is more than 10 years ahead`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			te := newTestEnv(t)
			te.enqueue(te.jobs(), c.msg)
			code, out, raw := te.deliver(FunctionRunJob, te.jobs(), 5*time.Second)
			if code != 200 || out.ReturnValue == nil || out.ReturnValue.(map[string]any)["outcome"] != "poisoned" {
				t.Fatalf("RunJob: %d %s; want outcome poisoned", code, raw)
			}
			if logs := strings.Join(out.Logs, "\n"); !strings.Contains(logs, c.want) {
				t.Fatalf("logs %q lack %q", logs, c.want)
			}
			if code, _, raw := te.deliver(FunctionRunDeadLetter, te.poison(), 5*time.Second); code != 200 {
				t.Fatalf("RunDeadLetter: %d %s", code, raw)
			}
			ids, err := te.store.ListDeadLetters(context.Background())
			if err != nil || len(ids) != 1 {
				t.Fatalf("dead letters %v %v", ids, err)
			}
			dl, _, err := te.store.GetDeadLetter(context.Background(), ids[0])
			if err != nil || dl.Reason != record.ReasonUndecodable || dl.Raw != c.msg || !strings.Contains(dl.Detail, c.want) {
				t.Fatalf("dead letter %+v %v; want reason undecodable, the raw message, detail containing %q", dl, err, c.want)
			}
			// Nothing ran: no status record was written for the job id in the message.
			if _, _, err := te.store.GetStatus(context.Background(), strings.Split(strings.Split(c.msg, `"job_id":"`)[1], `"`)[0]); !errors.Is(err, storage.ErrNotFound) {
				t.Fatalf("status of a refused message: %v", err)
			}
		})
	}
}

// Claim-checked args are held to the same rule as inline args: a payload with a repeated
// key is a permanent error naming it (the payload blob is the job's own, hash-checked).
func TestClaimCheckedArgsWithDuplicateKeysAreRefused(t *testing.T) {
	t.Parallel()
	te := newTestEnv(t)
	st := te.runClaimChecked("dup-payload", []byte(`{"A":1,"B":2,"B":40}`))
	if st.State != record.StateDead || st.Result != nil || !strings.Contains(st.LastError, `envelope field "args.B": is a duplicate key`) {
		t.Fatalf("status %s, result %v, last error %q; want dead naming args.B", st.State, st.Result, st.LastError)
	}
}

// The Go client refuses out-of-bounds options with the same limits, before sending.
func TestClientRefusesOutOfBoundsOptionsBeforeSending(t *testing.T) {
	t.Parallel()
	te := newTestEnv(t)
	c := NewClient(te.store, nil)
	ctx := context.Background()
	many := map[string]string{}
	for i := 0; i <= envelope.MaxMetaEntries; i++ {
		many[fmt.Sprint(i)] = "v"
	}
	cases := []struct {
		name  string
		args  string
		opts  *EnqueueOptions
		field string
		want  string
	}{
		{"max attempts", "", &EnqueueOptions{MaxAttempts: envelope.MaxAttemptsLimit + 1}, "max_attempts", "at most 100 (envelope.MaxAttemptsLimit)"},
		{"timeout", "", &EnqueueOptions{Timeout: envelope.MaxTimeout + time.Second}, "timeout_seconds", "7 days, envelope.MaxTimeout"},
		{"run in", "", &EnqueueOptions{RunIn: envelope.MaxScheduleAhead + time.Hour}, "run_at", "more than 10 years ahead"},
		{"run in overflow", "", &EnqueueOptions{RunIn: time.Duration(1<<63 - 1)}, "run_at", "more than 10 years ahead"},
		{"run at", "", &EnqueueOptions{RunAt: time.Now().AddDate(11, 0, 0)}, "run_at", "more than 10 years ahead"},
		{"meta entries", "", &EnqueueOptions{Meta: many}, "meta", "at most 64"},
		{"meta value", "", &EnqueueOptions{Meta: map[string]string{"k": strings.Repeat("v", envelope.MaxMetaValueBytes+1)}}, "meta.k", "at most 1024"},
		{"dedupe key", "", &EnqueueOptions{DedupeKey: strings.Repeat("d", envelope.MaxDedupeKeyBytes+1)}, "dedupe_key", "at most 512"},
		{"duplicate args", `{"A":1,"A":2}`, nil, "args.A", "duplicate key"},
	}
	for _, tc := range cases {
		_, err := c.EnqueueRaw(ctx, "test.add", json.RawMessage(tc.args), tc.opts)
		var fe *envelope.FieldError
		if !errors.As(err, &fe) || fe.Field != tc.field || !strings.Contains(fe.Problem, tc.want) {
			t.Errorf("%s: err %v; want field %s with %q", tc.name, err, tc.field, tc.want)
		}
	}
	children := make([]EnqueueParams, envelope.MaxBatchChildren+1)
	for i := range children {
		children[i] = EnqueueParams{Args: countArgs{}}
	}
	_, err := c.StartBatch(ctx, BatchParams{BatchID: "too-big", Children: children})
	var fe *envelope.FieldError
	if !errors.As(err, &fe) || fe.Field != "children" || !strings.Contains(fe.Problem, "at most 10000 per batch") {
		t.Errorf("batch of %d: %v", len(children), err)
	}
	_, err = c.StartBatch(ctx, BatchParams{BatchID: "too-lenient", AllowedFailures: envelope.MaxBatchChildren + 1})
	if !errors.As(err, &fe) || fe.Field != "allowed_failures" {
		t.Errorf("allowed failures: %v", err)
	}
	if n := te.queueLen(te.jobs()); n != 0 {
		t.Fatalf("%d messages sent by refused calls", n)
	}
}

// A dead letter replayed MaxReplays times is not replayed again.
func TestReplayBounded(t *testing.T) {
	t.Parallel()
	te := newTestEnv(t)
	c := NewClient(te.store, nil)
	env := &envelope.Envelope{Version: 1, JobID: "replayed-a-lot", Kind: "test.add", Attempt: 1, Replay: envelope.MaxReplays, EnqueuedAt: time.Now().UTC()}
	dl := &record.DeadLetter{DeadID: env.JobID, JobID: env.JobID, Kind: env.Kind, Reason: record.ReasonPermanentError, DiedAt: time.Now().UTC(),
		Envelope: env, Replays: envelope.MaxReplays}
	if _, err := te.store.PutDeadLetter(context.Background(), dl, ""); err != nil {
		t.Fatal(err)
	}
	_, err := c.Replay(context.Background(), env.JobID)
	var fe *envelope.FieldError
	if !errors.As(err, &fe) || fe.Field != "replay" || !strings.Contains(err.Error(), "envelope.MaxReplays") {
		t.Fatalf("replay: %v", err)
	}
	if n := te.queueLen(te.jobs()); n != 0 {
		t.Fatalf("%d messages sent", n)
	}
}

// A kind cannot be registered with more attempts or a longer timeout than an envelope
// may carry.
func TestWorkerOptionsBounded(t *testing.T) {
	reg := NewRegistry()
	noop := WorkFunc[countArgs](func(context.Context, *Job[countArgs]) (any, error) { return nil, nil })
	if err := AddWorkerSafely(reg, noop, &WorkerOptions{MaxAttempts: envelope.MaxAttemptsLimit + 1}); err == nil || !strings.Contains(err.Error(), "MaxAttemptsLimit") {
		t.Errorf("max attempts: %v", err)
	}
	if err := AddWorkerSafely(reg, noop, &WorkerOptions{Timeout: envelope.MaxTimeout + time.Second}); err == nil || !strings.Contains(err.Error(), "MaxTimeout") {
		t.Errorf("timeout: %v", err)
	}
	if err := AddWorkerSafely(reg, noop, &WorkerOptions{MaxAttempts: envelope.MaxAttemptsLimit, Timeout: envelope.MaxTimeout}); err != nil {
		t.Errorf("at the bounds: %v", err)
	}
}
