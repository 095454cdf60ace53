package nightshift_test

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"strings"
	"testing"

	"github.com/nightshift-jobs/nightshift"
	"github.com/nightshift-jobs/nightshift/internal/testenv"
	"github.com/nightshift-jobs/nightshift/record"
	"github.com/nightshift-jobs/nightshift/storage"
)

type memSumArgs struct {
	A, B int
	Pad  string // makes the args big enough to be claim-checked
}

func (memSumArgs) Kind() string { return "memory.sum" }

type memBigArgs struct{ Size int }

func (memBigArgs) Kind() string { return "memory.big" }

type memRefuseArgs struct{}

func (memRefuseArgs) Kind() string { return "memory.refuse" }

// TestEndToEndOnMemory runs real jobs through the handler on the in-memory storage
// driver, with no Azurite: the client enqueues, the test plays the host's queue trigger
// through the storage boundary, and the statuses, results and dead letters are read back.
// It covers an inline result, claim-checked args (payload blob), a result blob and a
// permanent failure that ends as a dead letter through the poison queue.
func TestEndToEndOnMemory(t *testing.T) {
	t.Parallel()
	store := testenv.Memory(t)
	if store.QueueURL != "" || store.BlobURL != "" {
		t.Fatal("memory-backed clients name service endpoints")
	}
	reg := nightshift.NewRegistry()
	nightshift.AddWorkerFunc(reg, func(ctx context.Context, j *nightshift.Job[memSumArgs]) (any, error) {
		return map[string]int{"sum": j.Args.A + j.Args.B, "pad": len(j.Args.Pad)}, nil
	}, nil)
	nightshift.AddWorkerFunc(reg, func(ctx context.Context, j *nightshift.Job[memBigArgs]) (any, error) {
		return nightshift.Bytes{ContentType: "text/plain", Data: bytes.Repeat([]byte("x"), j.Args.Size)}, nil
	}, nil)
	nightshift.AddWorkerFunc(reg, func(ctx context.Context, j *nightshift.Job[memRefuseArgs]) (any, error) {
		return nil, nightshift.Permanentf("refused on purpose")
	}, nil)
	h := nightshift.NewHandler(reg, store, &nightshift.HandlerOptions{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	client := nightshift.NewClient(store, nil)
	ctx := context.Background()

	small, err := client.Enqueue(ctx, memSumArgs{A: 2, B: 3}, nil)
	if err != nil {
		t.Fatal(err)
	}
	pad := strings.Repeat("p", nightshift.ClaimCheckThreshold+1)
	claimed, err := client.Enqueue(ctx, memSumArgs{A: 40, B: 2, Pad: pad}, nil)
	if err != nil {
		t.Fatal(err)
	}
	big, err := client.Enqueue(ctx, memBigArgs{Size: record.MaxInlineResult + 1}, nil)
	if err != nil {
		t.Fatal(err)
	}
	refused, err := client.Enqueue(ctx, memRefuseArgs{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if st, err := client.Status(ctx, small.JobID); err != nil || st.State != record.StateQueued {
		t.Fatalf("before delivery: %+v, %v", st, err)
	}
	payloads, argsBlob := store.Layout.PayloadsContainer(), storage.ArgsPayloadBlob(claimed.JobID)
	if _, err := store.Store().Properties(ctx, payloads, argsBlob); err != nil {
		t.Fatalf("claim-checked args: %v", err)
	}

	testenv.Drain(t, store, h, store.Layout.JobsQueue(), nightshift.FunctionRunJob, nightshift.FunctionRunDeadLetter)

	for _, c := range []struct {
		id   string
		want map[string]int
	}{{small.JobID, map[string]int{"sum": 5, "pad": 0}}, {claimed.JobID, map[string]int{"sum": 42, "pad": len(pad)}}} {
		st, err := client.Status(ctx, c.id)
		if err != nil || st.State != record.StateSucceeded {
			t.Fatalf("job %s: %+v, %v", c.id, st, err)
		}
		var got map[string]int
		if err := client.Result(ctx, c.id, &got); err != nil {
			t.Fatal(err)
		}
		if got["sum"] != c.want["sum"] || got["pad"] != c.want["pad"] {
			t.Fatalf("job %s: result %v, want %v", c.id, got, c.want)
		}
	}
	if _, err := store.Store().Properties(ctx, payloads, argsBlob); !storage.IsNotFound(err) {
		t.Fatalf("claim-checked args of the succeeded job: %v, want them deleted", err)
	}
	if st, err := client.Status(ctx, big.JobID); err != nil || st.State != record.StateSucceeded || st.Result == nil || st.Result.Blob == "" {
		t.Fatalf("big result: %+v, %v (want a result blob)", st, err)
	}
	ct, data, err := client.ResultBytes(ctx, big.JobID)
	if err != nil || ct != "text/plain" || len(data) != record.MaxInlineResult+1 {
		t.Fatalf("big result: %q, %d bytes, %v", ct, len(data), err)
	}
	if st, err := client.Status(ctx, refused.JobID); err != nil || st.State != record.StateDead {
		t.Fatalf("refused job: %+v, %v", st, err)
	}
	dls, err := client.DeadLetters(ctx)
	if err != nil || len(dls) != 1 || dls[0].JobID != refused.JobID || dls[0].Reason != record.ReasonPermanentError {
		t.Fatalf("dead letters %+v, %v", dls, err)
	}
}
