package nightshift

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azqueue/v2"
	"github.com/nightshift-jobs/nightshift/envelope"
	"github.com/nightshift-jobs/nightshift/internal/testenv"
	"github.com/nightshift-jobs/nightshift/record"
	"github.com/nightshift-jobs/nightshift/seal"
	"github.com/nightshift-jobs/nightshift/storage"
)

// Encryption at rest (docs/encryption.md): with a key configured, a job's args, result and
// captured logs are not readable in the raw queue message or blobs, and round-trip for the
// job, the client and the HTTP API.

// sealMarker stands for sensitive data; it must never appear in raw storage.
const sealMarker = "MARKER-7f3a9c-SENSITIVE"

type sealArgs struct {
	Secret string
	Pad    string // long args are claim-checked
	Big    int    // a result of this many bytes (over MaxInlineResult goes to a blob)
	Fail   bool
}

func (sealArgs) Kind() string { return "test.sealed" }

func sealRegistry() *Registry {
	reg := NewRegistry()
	AddWorkerFunc(reg, func(ctx context.Context, j *Job[sealArgs]) (any, error) {
		j.Logger.Info("processing " + j.Args.Secret)
		if j.Args.Fail {
			return nil, Permanentf("refused on purpose")
		}
		if j.Args.Big > 0 {
			return Bytes{ContentType: "text/plain", Data: []byte(strings.Repeat(j.Args.Secret, j.Args.Big/len(j.Args.Secret)+1))}, nil
		}
		return map[string]string{"echo": j.Args.Secret}, nil
	}, &WorkerOptions{MaxAttempts: 2, Backoff: ConstantBackoff(time.Second)})
	return reg
}

func newKey(t testing.TB) string {
	t.Helper()
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return base64.StdEncoding.EncodeToString(b)
}

// storeWithKeys returns clients on the prefix of like (a fresh one when like is nil) with
// NIGHTSHIFT_ENCRYPTION_LOCAL_KEYS set to keys ("" for none), built by storage.FromEnv as
// every nightshift process builds them.
func storeWithKeys(t *testing.T, like *storage.Clients, keys string) *storage.Clients {
	t.Helper()
	if like == nil {
		return testenv.Clients(t, seal.SettingLocalKeys, keys)
	}
	m := map[string]string{
		storage.SettingStorage:    testenv.ConnectionString(t),
		storage.SettingNamePrefix: like.Layout.Prefix(),
		seal.SettingLocalKeys:     keys,
	}
	c, err := storage.FromEnv(func(k string) string { return m[k] }, nil)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// featEnvOn is newFeatEnv on given clients.
func featEnvOn(t *testing.T, store *storage.Clients, reg *Registry) *featEnv {
	t.Helper()
	fe := &featEnv{t: t, store: store}
	fe.h = NewHandler(reg, store, &HandlerOptions{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	fe.srv = httptest.NewServer(fe.h)
	t.Cleanup(fe.srv.Close)
	fe.client = NewClient(store, nil)
	return fe
}

// rawBlob reads a blob with the plain SDK client, as anyone with read access would.
func rawBlob(t *testing.T, store *storage.Clients, container, name string) []byte {
	t.Helper()
	resp, err := testenv.BlobService(store).DownloadStream(context.Background(), container, name, nil)
	if err != nil {
		t.Fatalf("raw read %s/%s: %v", container, name, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// assertSealed fails unless the raw blob is sealed with key kid and hides the marker.
func assertSealed(t *testing.T, store *storage.Clients, container, name, kid string) {
	t.Helper()
	b := rawBlob(t, store, container, name)
	if bytes.Contains(b, []byte(sealMarker)) || !seal.IsSealed(b) {
		t.Fatalf("%s/%s is readable without the key: %.200q", container, name, b)
	}
	if got, err := seal.KeyID(b); err != nil || got != kid {
		t.Fatalf("%s/%s sealed with key %q (%v), want %q", container, name, got, err, kid)
	}
}

func peekAll(t *testing.T, store *storage.Clients, queue string) []string {
	t.Helper()
	resp, err := testenv.QueueService(store).NewQueueClient(queue).PeekMessages(context.Background(), &azqueue.PeekMessagesOptions{NumberOfMessages: to.Ptr(int32(32))})
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, m := range resp.Messages {
		out = append(out, *m.MessageText)
	}
	return out
}

// assertQueueHidesArgs fails unless the queue holds n messages, none showing the marker,
// each with its args in exactly one sealed form (args_sealed, or args_ref to a sealed blob).
func assertQueueHidesArgs(t *testing.T, store *storage.Clients, queue string, n int) {
	t.Helper()
	msgs := peekAll(t, store, queue)
	if len(msgs) != n {
		t.Fatalf("%d messages on the queue, want %d", len(msgs), n)
	}
	for _, m := range msgs {
		if strings.Contains(m, sealMarker) {
			t.Fatalf("queue message shows the args: %.300s", m)
		}
		env, err := envelope.Decode([]byte(m))
		if err != nil {
			t.Fatal(err)
		}
		if len(env.Args) != 0 || (env.ArgsSealed == nil) == (env.ArgsRef == nil) {
			t.Fatalf("job %s: args %q, args_sealed %d bytes, args_ref %v: want exactly one of the sealed forms", env.JobID, env.Args, len(env.ArgsSealed), env.ArgsRef)
		}
	}
}

// assertClientRoundTrip checks that the client reads the sealed results and logs plain.
func assertClientRoundTrip(t *testing.T, client *Client) {
	t.Helper()
	ctx := context.Background()
	var r map[string]string
	for _, id := range []string{"inline", "claimed"} {
		if err := client.Result(ctx, id, &r); err != nil || r["echo"] != sealMarker {
			t.Fatalf("Result(%s) = %v, %v", id, r, err)
		}
	}
	if _, data, err := client.ResultBytes(ctx, "blob"); err != nil || len(data) < 2*record.MaxInlineResult || !bytes.HasPrefix(data, []byte(sealMarker)) {
		t.Fatalf("ResultBytes(blob) = %d bytes, %v", len(data), err)
	}
	logs, _, err := client.Logs(ctx, "inline")
	if err != nil || len(logs) == 0 || !strings.Contains(logs[0].Message, sealMarker) {
		t.Fatalf("Logs = %v, %v", logs, err)
	}
}

func TestEncryptionAtRestSealsArgsResultsLogsAndDeadLetters(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	store := storeWithKeys(t, nil, "k1:"+newKey(t))
	fe := featEnvOn(t, store, sealRegistry())
	l := store.Layout
	enq := func(id string, a sealArgs) {
		t.Helper()
		if _, err := fe.client.Enqueue(ctx, a, &EnqueueOptions{JobID: id}); err != nil {
			t.Fatal(err)
		}
	}
	enq("inline", sealArgs{Secret: sealMarker})
	enq("blob", sealArgs{Secret: sealMarker, Big: 2 * record.MaxInlineResult})
	enq("claimed", sealArgs{Secret: sealMarker, Pad: strings.Repeat(sealMarker, ClaimCheckThreshold/len(sealMarker)+1)})
	enq("failing", sealArgs{Secret: sealMarker, Fail: true})

	// The queue messages: args sealed in the envelope, or in the (sealed) payload blob.
	assertQueueHidesArgs(t, store, l.JobsQueue(), 4)
	assertSealed(t, store, l.PayloadsContainer(), storage.ArgsPayloadBlob("claimed"), "k1")
	assertSealed(t, store, l.StatusContainer(), storage.StatusBlob("inline"), "k1") // queued

	fe.runUntil(60*time.Second, "four jobs ended and the dead letter written", func() bool {
		_, _, err := store.GetDeadLetter(ctx, "failing")
		return fe.ended("inline") && fe.ended("blob") && fe.ended("claimed") && err == nil
	})
	for _, id := range []string{"inline", "blob", "claimed", "failing"} {
		assertSealed(t, store, l.StatusContainer(), storage.StatusBlob(id), "k1")
	}
	assertSealed(t, store, l.ResultsContainer(), storage.ResultBlob("blob"), "k1")
	assertSealed(t, store, l.DeadLettersContainer(), record.DeadLetterBlob("failing"), "k1")

	// Round trip for the client: results, logs and the dead letter read plain.
	assertClientRoundTrip(t, fe.client)
	st := fe.statusOf("failing")
	if st.State != record.StateDead || !strings.Contains(st.LastError, "refused on purpose") {
		t.Fatalf("failing: %s %q", st.State, st.LastError)
	}
	dl, err := fe.client.DeadLetter(ctx, "failing")
	if err != nil || dl.Envelope == nil || len(dl.Envelope.ArgsSealed) == 0 {
		t.Fatalf("DeadLetter = %+v, %v", dl, err)
	}
	// The sealed args in the dead letter still open for the job (replay runs them).
	if got, err := store.Sealer.Open(ctx, dl.Envelope.ArgsSealed, storage.ArgsAAD("failing")); err != nil || !bytes.Contains(got, []byte(sealMarker)) {
		t.Fatalf("dead letter's args_sealed: %q, %v", got, err)
	}
}

// Key rotation with local keys: values sealed with k1 still read after rotating to
// "k2:…,k1:…", new writes use k2, and with k1 removed a k1 value fails naming the key.
func TestEncryptionKeyRotation(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	k1, k2 := "k1:"+newKey(t), "k2:"+newKey(t)
	old := storeWithKeys(t, nil, k1)
	feOld := featEnvOn(t, old, sealRegistry())
	if _, err := feOld.client.Enqueue(ctx, sealArgs{Secret: sealMarker}, &EnqueueOptions{JobID: "before"}); err != nil {
		t.Fatal(err)
	}
	feOld.runUntil(30*time.Second, "job before the rotation", func() bool { return feOld.ended("before") })
	// A job enqueued with k1 and run after the rotation.
	if _, err := feOld.client.Enqueue(ctx, sealArgs{Secret: sealMarker}, &EnqueueOptions{JobID: "queued-under-k1"}); err != nil {
		t.Fatal(err)
	}
	l := old.Layout
	assertSealed(t, old, l.StatusContainer(), storage.StatusBlob("before"), "k1")

	rotated := storeWithKeys(t, old, k2+","+k1)
	feNew := featEnvOn(t, rotated, sealRegistry())
	var r map[string]string
	if err := feNew.client.Result(ctx, "before", &r); err != nil || r["echo"] != sealMarker {
		t.Fatalf("after rotation Result(before) = %v, %v", r, err)
	}
	feNew.runUntil(30*time.Second, "job queued under k1", func() bool { return feNew.ended("queued-under-k1") })
	if st := feNew.statusOf("queued-under-k1"); st.State != record.StateSucceeded {
		t.Fatalf("queued-under-k1: %s %q", st.State, st.LastError)
	}
	assertSealed(t, old, l.StatusContainer(), storage.StatusBlob("queued-under-k1"), "k2")

	onlyK2 := storeWithKeys(t, old, k2)
	_, _, err := onlyK2.GetStatus(ctx, "before")
	if !errors.Is(err, seal.ErrUnknownKey) || !strings.Contains(err.Error(), `"k1"`) || !strings.Contains(err.Error(), seal.SettingLocalKeys) {
		t.Fatalf("reading a k1 record with k1 removed: %v; want ErrUnknownKey naming k1 and %s", err, seal.SettingLocalKeys)
	}
}

// A sealed value is bound to where it lives: a status blob copied over another job's,
// or sealed args copied into another job's envelope, do not open.
func TestSealedValuesBoundToTheirPlace(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	store := storeWithKeys(t, nil, "k1:"+newKey(t))
	fe := featEnvOn(t, store, sealRegistry())
	if _, err := fe.client.Enqueue(ctx, sealArgs{Secret: sealMarker}, &EnqueueOptions{JobID: "victim"}); err != nil {
		t.Fatal(err)
	}
	l := store.Layout
	raw := rawBlob(t, store, l.StatusContainer(), storage.StatusBlob("victim"))
	if _, err := testenv.BlobService(store).UploadBuffer(ctx, l.StatusContainer(), storage.StatusBlob("thief"), raw, &azblob.UploadBufferOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := store.GetStatus(ctx, "thief"); !errors.Is(err, seal.ErrCorrupt) {
		t.Fatalf("status blob moved to another job: %v, want ErrCorrupt", err)
	}
	msgs := peekAll(t, store, l.JobsQueue())
	victim, err := envelope.Decode([]byte(msgs[0]))
	if err != nil {
		t.Fatal(err)
	}
	stolen := &envelope.Envelope{JobID: "swapped", Kind: "test.sealed", ArgsSealed: victim.ArgsSealed}
	body, err := stolen.Encode()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := store.Enqueue(ctx, l.JobsQueue(), body, 0, 0); err != nil {
		t.Fatal(err)
	}
	fe.runUntil(30*time.Second, "both jobs ended", func() bool { return fe.ended("victim") && fe.ended("swapped") })
	st := fe.statusOf("swapped")
	if st.State != record.StateDead || !strings.Contains(st.LastError, "args_sealed does not open") || st.Result != nil {
		t.Fatalf("swapped args: %s %q", st.State, st.LastError)
	}
	if len(st.Logs) > 0 {
		t.Fatalf("the job ran with another job's args: %v", st.Logs)
	}
}

// Sealed args reaching a handler without the key: the job is dead at once (permanent),
// inspectable, and the error names the settings. Plain args from a producer that writes
// the queue directly still run where a key is configured, and plain records written
// before encryption was turned on still read.
func TestSealedArgsWithoutKeyAndPlainInputs(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	sealed := storeWithKeys(t, nil, "k1:"+newKey(t))
	plain := storeWithKeys(t, sealed, "")
	if plain.Sealer != nil {
		t.Fatal("no key set, yet a sealer")
	}
	args, err := sealed.Sealer.Seal(ctx, []byte(`{"Secret":"`+sealMarker+`"}`), storage.ArgsAAD("no-key"))
	if err != nil {
		t.Fatal(err)
	}
	env := &envelope.Envelope{JobID: "no-key", Kind: "test.sealed", ArgsSealed: args}
	body, err := env.Encode()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := plain.Enqueue(ctx, plain.Layout.JobsQueue(), body, 0, 0); err != nil {
		t.Fatal(err)
	}
	fe := featEnvOn(t, plain, sealRegistry())
	fe.runUntil(30*time.Second, "no-key job dead-lettered", func() bool {
		_, _, err := plain.GetDeadLetter(ctx, "no-key")
		return err == nil
	})
	st := fe.statusOf("no-key")
	if st.State != record.StateDead || st.Attempt != 1 || !strings.Contains(st.LastError, seal.SettingLocalKeys) || !strings.Contains(st.LastError, seal.SettingKeyURL) {
		t.Fatalf("sealed args without a key: %s attempt %d %q", st.State, st.Attempt, st.LastError)
	}
	if dl, err := fe.client.DeadLetter(ctx, "no-key"); err != nil || dl.Reason != record.ReasonPermanentError {
		t.Fatalf("dead letter: %+v, %v", dl, err)
	}

	// A plain record (written without a key) reads with a key configured, and a plain
	// message from another producer runs; what the handler writes is sealed.
	msg, _ := json.Marshal(map[string]any{"job_id": "plain-producer", "kind": "test.sealed", "args": map[string]string{"Secret": sealMarker}})
	if _, err := plain.Enqueue(ctx, plain.Layout.JobsQueue(), msg, 0, 0); err != nil {
		t.Fatal(err)
	}
	fs := featEnvOn(t, sealed, sealRegistry())
	if st, _, err := sealed.GetStatus(ctx, "no-key"); err != nil || st.State != record.StateDead {
		t.Fatalf("plain record read with a key: %v, %v", st, err)
	}
	fs.runUntil(30*time.Second, "plain-producer job ended", func() bool { return fs.ended("plain-producer") })
	var r map[string]string
	if err := fs.client.Result(ctx, "plain-producer", &r); err != nil || r["echo"] != sealMarker {
		t.Fatalf("plain-producer: %v, %v", r, err)
	}
	assertSealed(t, sealed, sealed.Layout.StatusContainer(), storage.StatusBlob("plain-producer"), "k1")
}

// BenchmarkInvocationAzuriteSealed is BenchmarkInvocationAzurite with an encryption key:
// the status read and the status write are opened and sealed. Their ratio is the cost of
// encryption at rest per job.
func BenchmarkInvocationAzuriteSealed(b *testing.B) {
	c := testenv.Clients(b, seal.SettingLocalKeys, "k1:"+newKey(b))
	runInvocations(b, benchHandler(b, c))
}
