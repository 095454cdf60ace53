package nightshift

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob"
	"github.com/nightshift-jobs/nightshift/envelope"
	"github.com/nightshift-jobs/nightshift/internal/testenv"
	"github.com/nightshift-jobs/nightshift/record"
	"github.com/nightshift-jobs/nightshift/storage"
)

// Security tests: what a producer with nothing but queue-send rights can make a job
// reach (docs/security.md). Each runs the real handler against Azurite with host-shaped
// invocations.

// putForeignBlob creates a container that is not nightshift's, with one blob in it: the
// kind of thing (another app's settings, a backup) a queue sender must not reach.
func putForeignBlob(t *testing.T, store *storage.Clients, container, name string, data []byte) {
	t.Helper()
	ctx := context.Background()
	if _, err := testenv.BlobService(store).CreateContainer(ctx, container, nil); err != nil && !storage.IsConflict(err) {
		t.Fatal(err)
	}
	if _, err := testenv.BlobService(store).UploadBuffer(ctx, container, name, data, &azblob.UploadBufferOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _, _ = testenv.BlobService(store).DeleteContainer(context.Background(), container, nil) })
}

func blobExists(t *testing.T, store *storage.Clients, container, name string) bool {
	t.Helper()
	_, err := testenv.BlobService(store).ServiceClient().NewContainerClient(container).NewBlobClient(name).GetProperties(context.Background(), nil)
	if err != nil && !storage.IsNotFound(err) {
		t.Fatal(err)
	}
	return err == nil
}

func sha(data []byte) string {
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:])
}

// Finding 1: args_ref must name the job's own payload blob, nothing else. A message that
// points it at another container, or at another job's payload, is refused before any
// read: the job is dead with a permanent error saying why, and the blob is neither read
// into the job nor deleted.
func TestArgsRefConfinedToTheJobsOwnPayload(t *testing.T) {
	t.Parallel()
	te := newTestEnv(t)
	secret := []byte(`{"A":40,"B":2}`)
	other := te.store.Layout.Prefix() + "-other-app"
	putForeignBlob(t, te.store, other, ".env", secret)
	// Another job's claim-checked args, in nightshift's own payloads container.
	if err := te.store.PutPayload(context.Background(), storage.ArgsPayloadBlob("someone-else"), "application/json", secret); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name, container, blob string
	}{
		{"foreign container", other, ".env"},
		{"another job's payload", te.store.Layout.PayloadsContainer(), storage.ArgsPayloadBlob("someone-else")},
		{"path tricks", te.store.Layout.PayloadsContainer(), "evil-3/../someone-else/args.json"},
	}
	for i, c := range cases {
		id := fmt.Sprintf("evil-%d", i+1)
		msg := fmt.Sprintf(`{"job_id":%q,"kind":"test.add","args_ref":{"container":%q,"blob":%q,"size":%d,"sha256":%q}}`,
			id, c.container, c.blob, len(secret), sha(secret))
		te.enqueue(te.jobs(), msg)
		code, out, raw := te.deliver(FunctionRunJob, te.jobs(), 5*time.Second)
		if code != 200 || out.ReturnValue == nil {
			t.Fatalf("%s: %d %s", c.name, code, raw)
		}
		st := te.status(id)
		if st.State != record.StateDead || st.Result != nil || !strings.Contains(st.LastError, "args_ref") {
			t.Fatalf("%s: status %s, result %v, last error %q; want dead, no result, an args_ref error", c.name, st.State, st.Result, st.LastError)
		}
		if !blobExists(t, te.store, c.container, strings.ReplaceAll(c.blob, "evil-3/../", "")) {
			t.Fatalf("%s: the referenced blob was deleted", c.name)
		}
	}
}

// Finding 1, second half: a payload larger than the app's maximum is not downloaded
// into memory, whatever args_ref claims about its size; a reference without a size or
// hash is refused (other-language producers must give both).
func TestArgsRefBoundedAndHashed(t *testing.T) {
	t.Parallel()
	te := newTestEnv(t)
	te.h = NewHandler(te.h.exec.reg, te.store, &HandlerOptions{Logger: te.h.log, MaxPayloadBytes: 1000})
	te.srv.Config.Handler = te.h
	ctx := context.Background()
	big := []byte(`{"A":1,"B":"` + strings.Repeat("x", 5000) + `"}`)
	small := []byte(`{"A":1,"B":2}`)
	cases := []struct {
		id, ref, want string
		data          []byte
	}{
		{"big-claims-small", fmt.Sprintf(`"size":10,"sha256":%q`, sha(big)), "larger than args_ref's size 10", big},
		{"big-honest", fmt.Sprintf(`"size":%d,"sha256":%q`, len(big), sha(big)), "maximum", big},
		{"no-hash", fmt.Sprintf(`"size":%d`, len(small)), "sha256", small},
		{"no-size", fmt.Sprintf(`"sha256":%q`, sha(small)), "size", small},
	}
	for _, c := range cases {
		name := storage.ArgsPayloadBlob(c.id)
		if err := te.store.PutPayload(ctx, name, "application/json", c.data); err != nil {
			t.Fatal(err)
		}
		te.enqueue(te.jobs(), fmt.Sprintf(`{"job_id":%q,"kind":"test.add","args_ref":{"container":%q,"blob":%q,%s}}`,
			c.id, te.store.Layout.PayloadsContainer(), name, c.ref))
		if code, _, raw := te.deliver(FunctionRunJob, te.jobs(), 5*time.Second); code != 200 {
			t.Fatalf("%s: %d %s", c.id, code, raw)
		}
		st := te.status(c.id)
		if st.State != record.StateDead || !strings.Contains(st.LastError, c.want) {
			t.Fatalf("%s: status %s, last error %q; want dead mentioning %q", c.id, st.State, st.LastError, c.want)
		}
	}
	// The honest small reference still works.
	name := storage.ArgsPayloadBlob("fine")
	st := te.runClaimChecked("fine", small)
	var sum map[string]int
	if st.State != record.StateSucceeded || json.Unmarshal(st.Result.JSON, &sum) != nil || sum["sum"] != 3 {
		t.Fatalf("fine: %s %s", st.State, st.LastError)
	}
	if blobExists(t, te.store, te.store.Layout.PayloadsContainer(), name) {
		t.Fatal("the payload of a succeeded job is still there")
	}
}

// TestClientQueuesConfined: the client puts jobs, batches and replays only on the app's
// job queues; a dead letter whose queue was tampered with is not replayed elsewhere; an
// unknown kind's dead detail does not list the kinds the app runs.
func TestClientQueuesConfined(t *testing.T) {
	t.Parallel()
	te := newTestEnv(t)
	ctx := context.Background()
	l := te.store.Layout
	client := NewClient(te.store, &ClientOptions{ExtraQueues: []string{l.Name("extra")}})
	foreign := l.Name("foreign")
	for _, q := range []string{l.PoisonQueue(l.JobsQueue()), foreign} {
		_, err := client.Enqueue(ctx, addArgs{A: 1}, &EnqueueOptions{Queue: q})
		var fe *envelope.FieldError
		if !errors.As(err, &fe) || fe.Field != "queue" || !strings.Contains(fe.Problem, "not one of this app's job queues") {
			t.Errorf("enqueue on %s: %v", q, err)
		}
		if _, err := client.StartBatch(ctx, BatchParams{Children: []EnqueueParams{{Args: addArgs{A: 1}}}, Queue: q}); err == nil || !strings.Contains(err.Error(), "not one of this app's job queues") {
			t.Errorf("batch on %s: %v", q, err)
		}
	}
	if _, err := testenv.QueueService(te.store).CreateQueue(ctx, l.Name("extra"), nil); err != nil {
		t.Fatal(err)
	}
	if _, err := client.Enqueue(ctx, addArgs{A: 1}, &EnqueueOptions{Queue: l.Name("extra")}); err != nil {
		t.Errorf("enqueue on an extra queue: %v", err)
	}
	env := &envelope.Envelope{Version: envelope.Version, JobID: "tampered", Kind: "test.add", Args: json.RawMessage(`{"A":1}`), Attempt: 1}
	if _, err := te.store.PutDeadLetter(ctx, &record.DeadLetter{DeadID: "tampered", JobID: "tampered", Kind: "test.add", Reason: record.ReasonAttemptsExhausted,
		Envelope: env, Queue: foreign, DiedAt: time.Now().UTC()}, ""); err != nil {
		t.Fatal(err)
	}
	if _, err := client.Replay(ctx, "tampered"); err == nil || !strings.Contains(err.Error(), "not one of this app's job queues") {
		t.Errorf("replay onto a foreign queue: %v", err)
	}
	if _, err := testenv.QueueService(te.store).NewQueueClient(foreign).GetProperties(ctx, nil); !storage.IsNotFound(err) {
		t.Errorf("the foreign queue exists: %v", err)
	}

	te.enqueue(te.jobs(), `{"job_id":"unknown-kind","kind":"no.such.kind"}`)
	if code, _, raw := te.deliver(FunctionRunJob, te.jobs(), 5*time.Second); code != 200 {
		t.Fatalf("deliver: %d %s", code, raw)
	}
	if code, _, raw := te.deliver(FunctionRunDeadLetter, l.PoisonQueue(te.jobs()), 5*time.Second); code != 200 {
		t.Fatalf("deliver dead letter: %d %s", code, raw)
	}
	st := te.status("unknown-kind")
	if st.State != record.StateDead || !strings.Contains(st.LastError, "no.such.kind") || strings.Contains(st.LastError, "test.add") {
		t.Errorf("unknown kind: %s %q", st.State, st.LastError)
	}
}

// runClaimChecked writes data as job id's payload blob, delivers a test.add job whose
// honest args_ref names it, and returns the job's status.
func (te *testEnv) runClaimChecked(id string, data []byte) *record.Status {
	te.t.Helper()
	name := storage.ArgsPayloadBlob(id)
	if err := te.store.PutPayload(context.Background(), name, "application/json", data); err != nil {
		te.t.Fatal(err)
	}
	te.enqueue(te.jobs(), fmt.Sprintf(`{"job_id":%q,"kind":"test.add","args_ref":{"container":%q,"blob":%q,"size":%d,"sha256":%q}}`,
		id, te.store.Layout.PayloadsContainer(), name, len(data), sha(data)))
	if code, _, raw := te.deliver(FunctionRunJob, te.jobs(), 5*time.Second); code != 200 {
		te.t.Fatalf("%s: %d %s", id, code, raw)
	}
	return te.status(id)
}
