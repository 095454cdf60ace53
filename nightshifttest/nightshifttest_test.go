package nightshifttest_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/nightshift-jobs/nightshift"
	"github.com/nightshift-jobs/nightshift/nightshifttest"
	"github.com/nightshift-jobs/nightshift/record"
)

type echoArgs struct {
	Name  string `json:"name"`
	Width int    `json:"width"`
	// Hidden is not part of the JSON: a queued job never carries it.
	Hidden string `json:"-"`
}

func (echoArgs) Kind() string { return "echo" }

func work(t *testing.T, fn func(context.Context, *nightshift.Job[echoArgs]) (any, error), args echoArgs, opts *nightshifttest.WorkOptions) *nightshifttest.Result {
	t.Helper()
	res, err := nightshifttest.Work(t.Context(), nightshift.WorkFunc[echoArgs](fn), args, opts)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

func TestWorkSucceedsWithJobContext(t *testing.T) {
	enq := time.Date(2026, 11, 1, 8, 0, 0, 0, time.UTC)
	var seen *nightshift.Job[echoArgs]
	res := work(t, func(ctx context.Context, job *nightshift.Job[echoArgs]) (any, error) {
		seen = job
		return map[string]any{"hello": job.Args.Name, "width": job.Args.Width}, nil
	}, echoArgs{Name: "ann", Width: 3}, &nightshifttest.WorkOptions{
		JobID: "job-1", Attempt: 2, MaxAttempts: 4, Replay: 1, DequeueCount: 3,
		Meta: map[string]string{"tenant": "t1"}, EnqueuedAt: enq, BatchID: "b-1", ParentID: "p-1",
	})
	if res.Err != nil || res.Class != "" || res.Outcome != "succeeded" {
		t.Fatalf("err %v class %q outcome %q", res.Err, res.Class, res.Outcome)
	}
	if got := string(res.JSON); got != `{"hello":"ann","width":3}` {
		t.Errorf("JSON = %s", got)
	}
	if res.ContentType != "application/json" || res.Bytes != nil {
		t.Errorf("content type %q, bytes %q", res.ContentType, res.Bytes)
	}
	if seen.ID != "job-1" || seen.Kind != "echo" || seen.Attempt != 2 || seen.MaxAttempts != 4 || seen.Replay != 1 ||
		seen.DequeueCount != 3 || seen.Meta["tenant"] != "t1" || !seen.EnqueuedAt.Equal(enq) || seen.BatchID != "b-1" || seen.ParentID != "p-1" {
		t.Errorf("job context %+v", seen)
	}
}

func TestWorkDefaults(t *testing.T) {
	var seen *nightshift.Job[echoArgs]
	res := work(t, func(ctx context.Context, job *nightshift.Job[echoArgs]) (any, error) {
		seen = job
		return nil, nil
	}, echoArgs{}, nil)
	if res.Outcome != "succeeded" || res.JSON != nil || res.Bytes != nil {
		t.Fatalf("%+v", res)
	}
	if seen.ID == "" || seen.Attempt != 1 || seen.MaxAttempts != nightshift.DefaultMaxAttempts || seen.DequeueCount != 1 || seen.EnqueuedAt.IsZero() {
		t.Errorf("defaults %+v", seen)
	}
}

// The args reach the worker through JSON, as from a queued envelope: a field JSON skips
// arrives empty.
func TestWorkArgsGoThroughJSON(t *testing.T) {
	res := work(t, func(ctx context.Context, job *nightshift.Job[echoArgs]) (any, error) {
		return job.Args.Hidden, nil
	}, echoArgs{Name: "ann", Hidden: "set by the test"}, nil)
	if string(res.JSON) != `""` {
		t.Errorf("the worker saw Hidden = %s; a queued job never carries it", res.JSON)
	}
}

func TestRunArgsThatDoNotDecodeArePermanent(t *testing.T) {
	reg := nightshift.NewRegistry()
	ran := false
	nightshift.AddWorkerFunc(reg, func(ctx context.Context, job *nightshift.Job[echoArgs]) (any, error) {
		ran = true
		return nil, nil
	}, nil)
	res, err := nightshifttest.Run(t.Context(), reg, "echo", []byte(`{"width":"wide"}`), nil)
	if err != nil {
		t.Fatal(err)
	}
	if ran || res.Class != "permanent" || res.Outcome != "dead" || res.DeadReason != "permanent_error" ||
		!strings.Contains(res.LastError, "do not decode") {
		t.Errorf("ran %v, %+v", ran, res)
	}
}

func TestRunUnknownKindAndBadJSON(t *testing.T) {
	reg := nightshift.NewRegistry()
	if _, err := nightshifttest.Run(t.Context(), reg, "nope", []byte(`{}`), nil); err == nil || !strings.Contains(err.Error(), `"nope"`) {
		t.Errorf("unknown kind: %v", err)
	}
	nightshift.AddWorkerFunc(reg, func(ctx context.Context, job *nightshift.Job[echoArgs]) (any, error) { return nil, nil }, nil)
	if _, err := nightshifttest.Run(t.Context(), reg, "echo", []byte(`{"name":`), nil); err == nil {
		t.Error("args that are not JSON ran")
	}
	if _, err := nightshifttest.Run(t.Context(), reg, "echo", []byte(`{"name":"a","name":"b"}`), nil); err == nil || !strings.Contains(err.Error(), "name") {
		t.Errorf("args with a key given twice: %v", err)
	}
}

func TestWorkPanicIsRecovered(t *testing.T) {
	res := work(t, func(ctx context.Context, job *nightshift.Job[echoArgs]) (any, error) {
		var m map[string]int
		m["boom"]++ //lint:ignore SA5000 the panic is the point of the test
		return nil, nil
	}, echoArgs{}, nil)
	var pe *nightshift.PanicError
	if !errors.As(res.Err, &pe) || res.Class != "panic" || res.Outcome != "retrying" {
		t.Fatalf("err %v class %q outcome %q", res.Err, res.Class, res.Outcome)
	}
	if !strings.Contains(pe.Stack, "nightshifttest_test") || !strings.Contains(res.LastError, "assignment to entry in nil map") {
		t.Errorf("stack %q, last error %q", pe.Stack, res.LastError)
	}
}

func TestWorkPermanentErrorIsDead(t *testing.T) {
	res := work(t, func(ctx context.Context, job *nightshift.Job[echoArgs]) (any, error) {
		return nil, nightshift.Permanentf("no address")
	}, echoArgs{}, nil)
	if !nightshift.IsPermanent(res.Err) || res.Class != "permanent" || res.Outcome != "dead" || res.DeadReason != "permanent_error" || res.RetryIn != 0 {
		t.Errorf("%+v", res)
	}
}

func TestWorkRetryAndLastAttempt(t *testing.T) {
	fail := func(ctx context.Context, job *nightshift.Job[echoArgs]) (any, error) {
		return nil, errors.New("connection reset")
	}
	backoff := nightshift.ExponentialBackoff{Base: time.Second, Factor: 2, Max: time.Minute}
	res := work(t, fail, echoArgs{}, &nightshifttest.WorkOptions{Attempt: 3, Worker: &nightshift.WorkerOptions{MaxAttempts: 5, Backoff: backoff}})
	if res.Class != "retryable" || res.Outcome != "retrying" || res.RetryIn != 4*time.Second || res.LastError != "connection reset" {
		t.Errorf("attempt 3 of 5: %+v", res)
	}
	res = work(t, fail, echoArgs{}, &nightshifttest.WorkOptions{Attempt: 5, Worker: &nightshift.WorkerOptions{MaxAttempts: 5}})
	if res.Outcome != "dead" || res.DeadReason != "attempts_exhausted" {
		t.Errorf("attempt 5 of 5: %+v", res)
	}
	// The envelope's max_attempts overrides the kind's.
	res = work(t, fail, echoArgs{}, &nightshifttest.WorkOptions{Attempt: 2, MaxAttempts: 2, Worker: &nightshift.WorkerOptions{MaxAttempts: 5}})
	if res.Outcome != "dead" {
		t.Errorf("attempt 2 of max_attempts 2: %+v", res)
	}
}

func TestWorkTimeout(t *testing.T) {
	res := work(t, func(ctx context.Context, job *nightshift.Job[echoArgs]) (any, error) {
		<-ctx.Done()
		return nil, ctx.Err()
	}, echoArgs{}, &nightshifttest.WorkOptions{Timeout: 10 * time.Millisecond})
	if res.Class != "timeout" || !errors.Is(res.Err, context.DeadlineExceeded) || res.Outcome != "retrying" ||
		!strings.Contains(res.LastError, "timed out after 10ms") {
		t.Errorf("%+v", res)
	}
}

func TestWorkCancelledContext(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	res, err := nightshifttest.Work(ctx, nightshift.WorkFunc[echoArgs](func(ctx context.Context, job *nightshift.Job[echoArgs]) (any, error) {
		return nil, ctx.Err()
	}), echoArgs{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if res.Class != "cancelled" || res.Outcome != "retrying" {
		t.Errorf("%+v", res)
	}
}

type card struct {
	Holder string `json:"holder"`
	Number string `json:"number" nightshift:"sensitive"`
}

func TestWorkLogsAreCapturedAndRedacted(t *testing.T) {
	var passed bytes.Buffer
	res := work(t, func(ctx context.Context, job *nightshift.Job[echoArgs]) (any, error) {
		job.Logger.Info("charging", "token", nightshift.Secret("tok-123"), "pin", nightshift.Sensitive("9876"),
			"card", card{Holder: "Ann", Number: "4111111111111111"})
		job.Logger.With("user", job.Args.Name).Warn("declined", "code", 51)
		return nil, nil
	}, echoArgs{Name: "ann"}, &nightshifttest.WorkOptions{Logger: slog.New(slog.NewTextHandler(&passed, nil))})
	want := []string{
		"INFO charging token=[redacted] pin=[redacted] card=map[holder:Ann number:[redacted]]",
		"WARN declined user=ann code=51",
	}
	if strings.Join(res.Logs, "\n") != strings.Join(want, "\n") {
		t.Errorf("logs:\n%s\nwant:\n%s", strings.Join(res.Logs, "\n"), strings.Join(want, "\n"))
	}
	for _, secret := range []string{"tok-123", "9876", "4111111111111111"} {
		if strings.Contains(strings.Join(res.Logs, "\n"), secret) || strings.Contains(passed.String(), secret) {
			t.Errorf("%s shows in the logs", secret)
		}
	}
	if !strings.Contains(passed.String(), "msg=declined") || !strings.Contains(passed.String(), "kind=echo attempt=1") {
		t.Errorf("the passed-through logger got %q", passed.String())
	}
}

func TestWorkProgressRecordsEveryReport(t *testing.T) {
	res := work(t, func(ctx context.Context, job *nightshift.Job[echoArgs]) (any, error) {
		for i := 1; i <= 3; i++ {
			job.Progress(ctx, float64(i)/4, "step")
		}
		job.Progress(ctx, 1.5, strings.Repeat("x", 600))
		job.Progress(ctx, math.NaN(), "nan")
		return nil, nil
	}, echoArgs{}, nil)
	want := []nightshifttest.Progress{{0.25, "step"}, {0.5, "step"}, {0.75, "step"}, {1, strings.Repeat("x", 512) + "…"}, {0, "nan"}}
	if len(res.Progress) != len(want) {
		t.Fatalf("progress %+v", res.Progress)
	}
	for i, p := range res.Progress {
		if p != want[i] {
			t.Errorf("report %d = %+v, want %+v", i, p, want[i])
		}
	}
}

func TestWorkResultEncodings(t *testing.T) {
	res := work(t, func(ctx context.Context, job *nightshift.Job[echoArgs]) (any, error) {
		return nightshift.Bytes{ContentType: "image/png", Data: []byte{0x89, 'P', 'N', 'G'}}, nil
	}, echoArgs{}, nil)
	if res.ContentType != "image/png" || string(res.Bytes) != "\x89PNG" || res.JSON != nil {
		t.Errorf("bytes: %+v", res)
	}
	big := strings.Repeat("a", record.MaxInlineResult+10)
	res = work(t, func(ctx context.Context, job *nightshift.Job[echoArgs]) (any, error) {
		return big, nil
	}, echoArgs{}, nil)
	if string(res.JSON) != `"`+big+`"` {
		t.Errorf("a result stored as a blob reads back as %d bytes", len(res.JSON))
	}
	res = work(t, func(ctx context.Context, job *nightshift.Job[echoArgs]) (any, error) {
		return make(chan int), nil
	}, echoArgs{}, nil)
	if res.Class != "permanent" || res.Outcome != "dead" || !strings.Contains(res.LastError, "cannot be encoded as JSON") {
		t.Errorf("unencodable result: %+v", res)
	}
}

func TestWorkWithoutClient(t *testing.T) {
	res := work(t, func(ctx context.Context, job *nightshift.Job[echoArgs]) (any, error) {
		if nightshift.JobClient(ctx) != nil {
			return nil, errors.New("a client without WorkOptions.Client")
		}
		_, err := nightshift.StartBatch(ctx, nightshift.BatchParams{})
		return nil, err
	}, echoArgs{}, nil)
	if res.Class != "retryable" || !strings.Contains(res.LastError, "WorkOptions.Client") {
		t.Errorf("%+v", res)
	}
}

func TestWorkInvalidWorkerOptions(t *testing.T) {
	_, err := nightshifttest.Work(t.Context(), nightshift.WorkFunc[echoArgs](func(ctx context.Context, job *nightshift.Job[echoArgs]) (any, error) {
		return nil, nil
	}), echoArgs{}, &nightshifttest.WorkOptions{Worker: &nightshift.WorkerOptions{MaxAttempts: 1 << 20}})
	if err == nil || !strings.Contains(err.Error(), "MaxAttempts") {
		t.Errorf("err %v", err)
	}
}
