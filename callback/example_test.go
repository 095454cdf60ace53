package callback_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"time"

	"github.com/nightshift-jobs/nightshift"
	"github.com/nightshift-jobs/nightshift/callback"
	"github.com/nightshift-jobs/nightshift/nightshifttest"
)

// ThumbArgs are the args of the example's job kind.
type ThumbArgs struct {
	Blob string `json:"blob"`
}

// Kind implements nightshift.JobArgs.
func (ThumbArgs) Kind() string { return "thumb" }

// A job asks for a signed webhook when it ends; the receiver verifies it with the
// secret(s) the operator gave its origin in NIGHTSHIFT_WEBHOOK_SECRETS. Here a real job
// runs on an in-memory app (nightshifttest.NewApp) wired as a handler's main wires
// callbacks, and the receiver is a local test server.
func ExampleVerify() {
	const current = "whsec_AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="
	const next = "whsec_ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8="
	sentAt := time.Unix(1_800_000_000, 0)

	// The receiver keeps what it was sent.
	type delivery struct {
		header http.Header
		body   []byte
	}
	got := make(chan delivery, 1)
	receiver := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		select {
		case got <- delivery{r.Header.Clone(), body}:
		default: // keep the first
		}
	}))
	defer receiver.Close()

	// The sending side: during a rotation both secrets sign, one "v1," signature each.
	secrets, err := callback.NewWebhookSecrets(map[string][]string{receiver.URL: {current, next}})
	if err != nil {
		panic(err)
	}
	reg := nightshift.NewRegistry()
	nightshift.AddWorkerFunc(reg, func(ctx context.Context, job *nightshift.Job[ThumbArgs]) (any, error) {
		return map[string]string{"thumb": job.Args.Blob + ".thumb"}, nil
	}, nil)
	app, err := nightshifttest.NewApp(reg, &nightshifttest.AppOptions{
		Features: []nightshift.Feature{callback.Feature(&callback.Options{
			Secrets: secrets, AllowPrivate: true, AllowHTTP: true, // the test server is http on loopback
			Now: func() time.Time { return sentAt },
		})},
	})
	if err != nil {
		panic(err)
	}
	ctx := context.Background()
	job, err := app.Client.Enqueue(ctx, ThumbArgs{Blob: "in/cat.png"}, &nightshift.EnqueueOptions{CallbackURL: receiver.URL + "/hooks/nightshift"})
	if err != nil {
		panic(err)
	}
	if _, err := app.Drain(ctx); err != nil { // the job, then its delivery job
		panic(err)
	}
	d := <-got
	var payload callback.Payload
	if err := json.Unmarshal(d.body, &payload); err != nil {
		panic(err)
	}
	fmt.Println(payload.Event, payload.Kind, payload.JobID == job.JobID, string(payload.Status.Result.JSON))
	fmt.Println(len(strings.Fields(d.header.Get(callback.HeaderWebhookSignature))), "signatures")

	// Receiving side: a receiver that already moved to the next secret accepts it; a
	// changed body does not verify; neither does a request from long ago.
	now := sentAt.Add(30 * time.Second) // in a receiver: time.Now()
	fmt.Println(callback.Verify([]string{next}, d.header, d.body, now, 5*time.Minute))
	fmt.Println(callback.Verify([]string{next}, d.header, []byte(`{"event":"job.dead"}`), now, 5*time.Minute))
	fmt.Println(callback.Verify([]string{current}, d.header, d.body, now.Add(time.Hour), 5*time.Minute))
	fmt.Println(callback.Verify(nil, d.header, d.body, now, 5*time.Minute))

	// The job's status records the delivery.
	st, err := app.Client.Status(ctx, job.JobID)
	if err != nil {
		panic(err)
	}
	fmt.Println(st.Callback.Event, st.Callback.Delivered, st.Callback.LastStatus)
	// Output:
	// job.succeeded thumb true {"thumb":"in/cat.png.thumb"}
	// 2 signatures
	// <nil>
	// callback: no signature matches the body (wrong secret, or the body, id or timestamp was changed)
	// callback: timestamp is 1h0m30s old; at most 5m0s allowed
	// callback: no secret to verify with
	// job.succeeded true 200
}
