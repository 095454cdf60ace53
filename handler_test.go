package nightshift

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nightshift-jobs/nightshift/envelope"
	"github.com/nightshift-jobs/nightshift/internal/testenv"
	"github.com/nightshift-jobs/nightshift/record"
)

func TestReadinessProbe(t *testing.T) {
	te := newTestEnv(t)
	code, _, raw := te.get("/")
	if code != 200 || !strings.Contains(raw, "ok") {
		t.Fatalf("%d %s", code, raw)
	}
}

func TestSuccessWritesStatusWithInlineResult(t *testing.T) {
	te := newTestEnv(t)
	msg := `{"job_id":"job-ok-1","kind":"test.add","args":{"A":2,"B":40}}`
	code, out, raw := te.invoke(FunctionRunJob, hostRequest(t, FunctionRunJob, []byte(msg), hostMeta{}))
	if code != 200 {
		t.Fatalf("%d %s", code, raw)
	}
	if len(out.Logs) == 0 || !strings.Contains(out.Logs[0], "adding a=2 b=40") {
		t.Fatalf("logs %q", out.Logs)
	}
	st := te.status("job-ok-1")
	if st.State != record.StateSucceeded || st.Attempt != 1 || st.Kind != "test.add" || st.FinishedAt.IsZero() {
		t.Fatalf("status %+v", st)
	}
	if st.Result == nil || string(st.Result.JSON) != `{"sum":42}` || st.Result.ContentType != "application/json" {
		t.Fatalf("result %+v", st.Result)
	}
	if len(st.Logs) != 1 || st.Logs[0].Level != "INFO" {
		t.Fatalf("captured logs %+v", st.Logs)
	}
}

func TestLargeResultGoesToResultsContainer(t *testing.T) {
	te := newTestEnv(t)
	msg := `{"job_id":"job-big-1","kind":"test.big","args":{"Size":100000}}`
	if code, _, raw := te.invoke(FunctionRunJob, hostRequest(t, FunctionRunJob, []byte(msg), hostMeta{})); code != 200 {
		t.Fatalf("%d %s", code, raw)
	}
	st := te.status("job-big-1")
	if st.Result == nil || st.Result.Blob != "job-big-1" || st.Result.Size != 100000 || st.Result.JSON != nil {
		t.Fatalf("result %+v", st.Result)
	}
	ct, data, err := te.store.GetResult(context.Background(), st)
	if err != nil || ct != "text/plain" || len(data) != 100000 {
		t.Fatalf("%s %d %v", ct, len(data), err)
	}
}

func TestRetryableFailureReenqueuesWithBackoff(t *testing.T) {
	te := newTestEnv(t)
	msg := `{"job_id":"job-fail-1","kind":"test.fail","args":{"Msg":"first"}}`
	te.enqueue(te.jobs(), msg)
	code, out, raw := te.deliver(FunctionRunJob, te.jobs(), 5*time.Second)
	if code != 200 {
		t.Fatalf("a retryable failure must answer 2xx so the host deletes the original: %d %s", code, raw)
	}
	if !strings.Contains(strings.Join(out.Logs, "\n"), "attempt 2 in") {
		t.Fatalf("logs %q", out.Logs)
	}
	st := te.status("job-fail-1")
	if st.State != record.StateRetrying || st.Attempt != 1 || !strings.Contains(st.LastError, "failing on purpose: first") || st.NextRunAt.IsZero() {
		t.Fatalf("status %+v", st)
	}
	// The retry is on the queue but invisible for the backoff delay (1 s here).
	if n := te.queueLen(te.jobs()); n != 1 {
		t.Fatalf("queue holds %d messages, want the retry", n)
	}
	peek, err := testenv.QueueService(te.store).NewQueueClient(te.jobs()).PeekMessage(context.Background(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(peek.Messages) != 0 {
		t.Fatal("the retry is visible at once; want it delayed")
	}
	m := te.receive(te.jobs(), 10*time.Second)
	env, err := envelope.Decode([]byte(*m.MessageText))
	if err != nil {
		t.Fatal(err)
	}
	if env.Attempt != 2 || len(env.Errors) != 1 || env.Errors[0].Attempt != 1 || env.Errors[0].Class != "retryable" {
		t.Fatalf("retry envelope %+v", env)
	}
	if !m.InsertionTime.Before(m.TimeNextVisible.Add(0)) {
		t.Fatal("no visibility delay recorded")
	}
}

func TestAttemptsExhaustedGoToPoisonAndDeadLetter(t *testing.T) {
	te := newTestEnv(t)
	te.enqueue(te.jobs(), `{"job_id":"job-dead-1","kind":"test.fail","args":{"Msg":"always"},"max_attempts":2}`)
	for attempt := 1; attempt <= 2; attempt++ {
		if code, _, raw := te.deliver(FunctionRunJob, te.jobs(), 10*time.Second); code != 200 {
			t.Fatalf("attempt %d: %d %s", attempt, code, raw)
		}
	}
	if n := te.queueLen(te.jobs()); n != 0 {
		t.Fatalf("jobs queue still holds %d", n)
	}
	st := te.status("job-dead-1")
	if st.State != record.StateDead || st.Attempt != 2 || len(st.Errors) != 2 {
		t.Fatalf("status %+v", st)
	}
	code, out, raw := te.deliver(FunctionRunDeadLetter, te.poison(), 5*time.Second)
	if code != 200 || !strings.Contains(strings.Join(out.Logs, ""), "attempts_exhausted") {
		t.Fatalf("%d %s", code, raw)
	}
	dl, _, err := te.store.GetDeadLetter(context.Background(), "job-dead-1")
	if err != nil {
		t.Fatal(err)
	}
	if dl.Reason != record.ReasonAttemptsExhausted || dl.Kind != "test.fail" || len(dl.Errors) != 2 ||
		dl.Envelope == nil || string(dl.Envelope.Args) != `{"Msg":"always"}` || dl.PoisonMessageID == "" {
		t.Fatalf("dead letter %+v", dl)
	}
	for i, e := range dl.Errors {
		if e.Attempt != i+1 || !strings.Contains(e.Error, "failing on purpose") || e.At.IsZero() {
			t.Fatalf("error %d: %+v", i, e)
		}
	}
	// The status keeps the captured log lines of both attempts.
	st = te.status("job-dead-1")
	if len(st.Logs) != 2 || st.Logs[0].Attempt != 1 || st.Logs[1].Attempt != 2 || st.DeadLetter != "job-dead-1.json" {
		t.Fatalf("status logs %+v", st)
	}
}

func TestPermanentErrorIsNotRetried(t *testing.T) {
	te := newTestEnv(t)
	te.enqueue(te.jobs(), `{"job_id":"job-perm-1","kind":"test.permanent"}`)
	if code, _, raw := te.deliver(FunctionRunJob, te.jobs(), 5*time.Second); code != 200 {
		t.Fatalf("%d %s", code, raw)
	}
	if n := te.queueLen(te.jobs()); n != 0 {
		t.Fatalf("permanent failure re-enqueued (%d messages)", n)
	}
	te.deliver(FunctionRunDeadLetter, te.poison(), 5*time.Second)
	dl, _, err := te.store.GetDeadLetter(context.Background(), "job-perm-1")
	if err != nil || dl.Reason != record.ReasonPermanentError || !strings.Contains(dl.Detail, "never retry") {
		t.Fatalf("%+v %v", dl, err)
	}
	if st := te.status("job-perm-1"); st.State != record.StateDead || st.Attempt != 1 {
		t.Fatalf("status %+v", st)
	}
}

func TestPanicIsRecordedWithStack(t *testing.T) {
	te := newTestEnv(t)
	msg := `{"job_id":"job-panic-1","kind":"test.panic"}`
	if code, _, raw := te.invoke(FunctionRunJob, hostRequest(t, FunctionRunJob, []byte(msg), hostMeta{})); code != 200 {
		t.Fatalf("%d %s", code, raw)
	}
	st := te.status("job-panic-1")
	if st.State != record.StateRetrying || len(st.Errors) != 1 || st.Errors[0].Class != "panic" ||
		!strings.Contains(st.Errors[0].Error, "assignment to entry in nil map") || !strings.Contains(st.Errors[0].Stack, "helpers_test.go") {
		t.Fatalf("status %+v", st)
	}
}

func TestUnknownKindGoesStraightToDeadLetter(t *testing.T) {
	te := newTestEnv(t)
	te.enqueue(te.jobs(), `{"job_id":"job-unknown-1","kind":"no.such.kind","args":[1]}`)
	code, out, raw := te.deliver(FunctionRunJob, te.jobs(), 5*time.Second)
	if code != 200 || !strings.Contains(strings.Join(out.Logs, ""), `no worker is registered for kind "no.such.kind"`) {
		t.Fatalf("%d %s", code, raw)
	}
	te.deliver(FunctionRunDeadLetter, te.poison(), 5*time.Second)
	dl, _, err := te.store.GetDeadLetter(context.Background(), "job-unknown-1")
	if err != nil || dl.Reason != record.ReasonUnknownKind || string(dl.Envelope.Args) != "[1]" {
		t.Fatalf("%+v %v", dl, err)
	}
	if st := te.status("job-unknown-1"); st.State != record.StateDead {
		t.Fatalf("status %+v", st)
	}
}

func TestGarbageMessageBecomesDeadLetter(t *testing.T) {
	te := newTestEnv(t)
	garbage := "this is not a job <&> é"
	te.enqueue(te.jobs(), garbage)
	code, out, raw := te.deliver(FunctionRunJob, te.jobs(), 5*time.Second)
	if code != 200 || !strings.Contains(strings.Join(out.Logs, ""), "not a valid job envelope") {
		t.Fatalf("%d %s", code, raw)
	}
	te.deliver(FunctionRunDeadLetter, te.poison(), 5*time.Second)
	ids, err := te.store.ListDeadLetters(context.Background())
	if err != nil || len(ids) != 1 || !strings.HasPrefix(ids[0], "msg-") {
		t.Fatalf("%v %v", ids, err)
	}
	dl, _, _ := te.store.GetDeadLetter(context.Background(), ids[0])
	if dl.Reason != record.ReasonUndecodable || dl.Raw != garbage || !strings.Contains(dl.Detail, "neither a JSON object nor base64") {
		t.Fatalf("dead letter %+v", dl)
	}
}

func TestDeadLetterCopesWithBytesAndRedelivery(t *testing.T) {
	te := newTestEnv(t)
	// dataType binary style: the trigger value is base64 of arbitrary bytes.
	bin := []byte{0xff, 0xfe, 0x00, 0x41}
	body := hostRequest(t, FunctionRunDeadLetter, []byte(`{"kind":"x"}`), hostMeta{})
	var req map[string]map[string]json.RawMessage
	_ = json.Unmarshal(body, &req)
	b64, _ := json.Marshal(bin)
	req["Data"]["message"] = b64
	body, _ = json.Marshal(req)
	for i := 0; i < 2; i++ { // the second delivery must not write a second record
		code, out, raw := te.invoke(FunctionRunDeadLetter, body)
		if code != 200 {
			t.Fatalf("%d %s", code, raw)
		}
		if i == 1 && out.ReturnValue.(map[string]any)["outcome"] != "duplicate" {
			t.Fatalf("redelivery outcome %v", out.ReturnValue)
		}
	}
	ids, _ := te.store.ListDeadLetters(context.Background())
	if len(ids) != 1 {
		t.Fatalf("records %v", ids)
	}
	dl, _, _ := te.store.GetDeadLetter(context.Background(), ids[0])
	if string(dl.RawBase64) != string(bin) || dl.Reason != record.ReasonUndecodable {
		t.Fatalf("%+v", dl)
	}
}

// A message the host moved to the poison queue after handler crashes (DequeueCount rule)
// reaches RunDeadLetter as a plain valid envelope.
func TestHostMovedMessageIsRecorded(t *testing.T) {
	te := newTestEnv(t)
	// The job was running when the handler crashed: its status says so.
	te.h.exec.markRunning(context.Background(), &envelope.Envelope{JobID: "job-crash-1", Kind: "test.add", Attempt: 1}, 10, time.Now(), te.jobs())
	te.enqueue(te.poison(), `{"job_id":"job-crash-1","kind":"test.add","args":{"A":1,"B":1}}`)
	if code, _, raw := te.deliver(FunctionRunDeadLetter, te.poison(), 5*time.Second); code != 200 {
		t.Fatalf("%d %s", code, raw)
	}
	dl, _, err := te.store.GetDeadLetter(context.Background(), "job-crash-1")
	if err != nil || dl.Reason != record.ReasonHostRetriesExhausted || len(dl.Errors) != 1 || dl.Errors[0].Class != "host" {
		t.Fatalf("%+v %v", dl, err)
	}
	if st := te.status("job-crash-1"); st.State != record.StateDead || st.StartedAt.IsZero() {
		t.Fatalf("status %+v", st)
	}
}

func TestRedeliveredSucceededJobDoesNotRunTwice(t *testing.T) {
	te := newTestEnv(t)
	msg := []byte(`{"job_id":"job-once-1","kind":"test.count"}`)
	for dq := 1; dq <= 3; dq++ {
		code, out, raw := te.invoke(FunctionRunJob, hostRequest(t, FunctionRunJob, msg, hostMeta{ID: "m1", DequeueCount: dq}))
		if code != 200 {
			t.Fatalf("%d %s", code, raw)
		}
		if dq > 1 && !strings.Contains(strings.Join(out.Logs, ""), "already succeeded") {
			t.Fatalf("delivery %d logs %q", dq, out.Logs)
		}
	}
	if n := te.runs.Load(); n != 1 {
		t.Fatalf("job ran %d times", n)
	}
}

// Without a job_id, the id is derived from the queue message, so a redelivery of the
// same message is still recognised.
func TestMissingJobIDIsDerivedFromTheMessage(t *testing.T) {
	te := newTestEnv(t)
	msg := []byte(`{"kind":"test.count"}`)
	ins := time.Now()
	for dq := 1; dq <= 2; dq++ {
		te.invoke(FunctionRunJob, hostRequest(t, FunctionRunJob, msg, hostMeta{ID: "same-message", DequeueCount: dq, Inserted: ins}))
	}
	if n := te.runs.Load(); n != 1 {
		t.Fatalf("job ran %d times", n)
	}
	ids, _ := te.store.ListStatuses(context.Background())
	if len(ids) != 1 || ids[0] != envelope.DerivedJobID(ins.Truncate(time.Second), "same-message") {
		t.Fatalf("statuses %v", ids)
	}
}

// The host copies top-level JSON properties into Metadata, and "id" would overwrite the
// message Id; nested objects arrive as objects. The handler reads the message from Data.
func TestMetadataCopiesDoNotConfuseTheHandler(t *testing.T) {
	te := newTestEnv(t)
	msg := `{"job_id":"job-meta-1","kind":"test.add","args":{"A":1,"B":2},"meta":{"tenant":"t1"},"attempt":1}`
	body := hostRequest(t, FunctionRunJob, []byte(msg), hostMeta{ID: "queue-msg-id"})
	var req struct{ Metadata map[string]json.RawMessage }
	_ = json.Unmarshal(body, &req)
	if string(req.Metadata["args"]) != `{"A":1,"B":2}` || string(req.Metadata["kind"]) != `"\"test.add\""` || string(req.Metadata["attempt"]) != `"\"1\""` {
		t.Fatalf("metadata not host-shaped: %s", body)
	}
	if code, _, raw := te.invoke(FunctionRunJob, body); code != 200 {
		t.Fatalf("%d %s", code, raw)
	}
	if st := te.status("job-meta-1"); st.State != record.StateSucceeded || st.Meta["tenant"] != "t1" {
		t.Fatalf("status %+v", st)
	}
	// A producer's "id" property overwrites the host's Id (contract §1.5) — and is not an
	// envelope field, so the message is rejected, named and kept.
	bad := `{"id":"mine","kind":"test.add"}`
	body = hostRequest(t, FunctionRunJob, []byte(bad), hostMeta{ID: "queue-msg-id-2"})
	_ = json.Unmarshal(body, &req)
	if string(req.Metadata["Id"]) != `"\"mine\""` {
		t.Fatalf("Id not overwritten: %s", req.Metadata["Id"])
	}
	code, out, _ := te.invoke(FunctionRunJob, body)
	if code != 200 || !strings.Contains(strings.Join(out.Logs, ""), `envelope field "id": unknown field`) {
		t.Fatalf("%d %q", code, out.Logs)
	}
}

func TestBadInvocationRequests(t *testing.T) {
	te := newTestEnv(t)
	for name, c := range map[string]struct {
		fn, body string
		code     int
		want     string
	}{
		"garbage body":     {FunctionRunJob, "garbage", 400, "not {\\\"Data\\\""},
		"no Data":          {FunctionRunJob, `{"Metadata":{}}`, 400, "no \\\"Data\\\" object"},
		"missing binding":  {FunctionRunJob, `{"Data":{"msg":"\"x\""},"Metadata":{}}`, 400, `no \"message\" binding`},
		"unknown function": {"NoSuchFunction", `{"Data":{}}`, 404, `no function \"NoSuchFunction\"`},
		"bad dequeue":      {FunctionRunJob, `{"Data":{"message":"\"{}\""},"Metadata":{"DequeueCount":"x"}}`, 400, "DequeueCount"},
	} {
		code, _, raw := te.invoke(c.fn, []byte(c.body))
		if code != c.code || !strings.Contains(raw, c.want) {
			t.Errorf("%s: %d %s; want %d containing %s", name, code, raw, c.code, c.want)
		}
	}
	code, _, raw := te.get("/" + FunctionRunJob)
	if code != 405 || !strings.Contains(raw, "POST") {
		t.Fatalf("GET function: %d %s", code, raw)
	}
}

func TestCancelledBeforeStartDoesNotRun(t *testing.T) {
	te := newTestEnv(t)
	// Cancelled through the client, which also journals the cancellation: a first delivery
	// reads its status only when the journal names it (docs/semantics.md, "The write path").
	if _, err := NewClient(te.store, nil).Cancel(context.Background(), "job-cancel-1"); err != nil {
		t.Fatal(err)
	}
	code, out, _ := te.invoke(FunctionRunJob, hostRequest(t, FunctionRunJob, []byte(`{"job_id":"job-cancel-1","kind":"test.count"}`), hostMeta{}))
	if code != 200 || te.runs.Load() != 0 || !strings.Contains(strings.Join(out.Logs, ""), "already cancelled") {
		t.Fatalf("%d %q runs=%d", code, out.Logs, te.runs.Load())
	}
}

// A callback whose hook failed after the success was recorded is asked for again when the
// host redelivers the message, although the job itself does not run again.
func TestCallbackRetriedOnRedelivery(t *testing.T) {
	te := newTestEnv(t)
	calls := 0
	te.h.exec.features = newFeatures(te.h.exec, func(ctx context.Context, env *envelope.Envelope, st *record.Status) error {
		calls++
		if calls == 1 {
			return fmt.Errorf("callback queue unreachable")
		}
		if st.State != record.StateSucceeded {
			t.Errorf("notified with state %s", st.State)
		}
		return nil
	}, nil)
	msg := []byte(`{"job_id":"job-cb-1","kind":"test.count","callback":{"queue":"hooks"}}`)
	if code, _, _ := te.invoke(FunctionRunJob, hostRequest(t, FunctionRunJob, msg, hostMeta{ID: "m-cb"})); code != 500 {
		t.Fatalf("a failed hook must fail the invocation, got %d", code)
	}
	if code, _, raw := te.invoke(FunctionRunJob, hostRequest(t, FunctionRunJob, msg, hostMeta{ID: "m-cb", DequeueCount: 2})); code != 200 {
		t.Fatalf("%d %s", code, raw)
	}
	if calls != 2 || te.runs.Load() != 1 {
		t.Fatalf("hook calls %d, runs %d", calls, te.runs.Load())
	}
}
