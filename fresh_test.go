package nightshift_test

import (
	"context"
	"io"
	"log/slog"
	"testing"

	"github.com/nightshift-jobs/nightshift"
	"github.com/nightshift-jobs/nightshift/internal/testenv"
	"github.com/nightshift-jobs/nightshift/record"
	"github.com/nightshift-jobs/nightshift/storage"
)

// TestDeadLetterOnAFreshAccount: RunDeadLetter on an account where nothing made
// nightshift's containers (a fresh Azurite started by someone else, `func start` before
// `nightshift dev`) makes the dead-letters and status containers it writes to, instead of
// failing every delivery with 500.
func TestDeadLetterOnAFreshAccount(t *testing.T) {
	t.Parallel()
	store, err := storage.FromEnv(testenv.Env(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	poison := store.Layout.PoisonQueue(store.Layout.JobsQueue())
	if _, err := testenv.QueueService(store).CreateQueue(ctx, poison, nil); err != nil { // the host makes poison queues
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_, _ = testenv.QueueService(store).DeleteQueue(context.Background(), poison, nil)
		for _, c := range store.Layout.Containers() {
			_, _ = testenv.BlobService(store).DeleteContainer(context.Background(), c, nil)
		}
	})
	if _, err := store.Enqueue(ctx, poison, []byte(`{"job_id":"fresh-1","kind":"no.such.kind"}`), 0, 0); err != nil {
		t.Fatal(err)
	}
	h := nightshift.NewHandler(nightshift.NewRegistry(), store, &nightshift.HandlerOptions{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if n := testenv.DeliverOnce(t, store, h, nightshift.FunctionRunDeadLetter, poison); n != 1 { // fails the test on a non-200
		t.Fatalf("delivered %d messages", n)
	}
	client := nightshift.NewClient(store, nil)
	if dl, err := client.DeadLetter(ctx, "fresh-1"); err != nil || dl.Reason != record.ReasonUnknownKind {
		t.Fatalf("dead letter %+v, %v", dl, err)
	}
	if st, err := client.Status(ctx, "fresh-1"); err != nil || st.State != record.StateDead {
		t.Fatalf("status %+v, %v", st, err)
	}
}
