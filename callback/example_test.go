package callback_test

import (
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/nightshift-jobs/nightshift/callback"
)

// A receiver verifies a webhook with the secret(s) the operator gave its origin in
// NIGHTSHIFT_WEBHOOK_SECRETS. Here the request is signed in place, as the delivery does.
func ExampleVerify() {
	const current = "whsec_AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="
	const next = "whsec_ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8="
	body := []byte(`{"event":"job.succeeded","job_id":"01J0000000000000000000000"}`)
	sentAt := time.Unix(1_800_000_000, 0)

	// Sending side: during a rotation both secrets sign, one "v1," signature each.
	sig, err := callback.Sign([]string{current, next}, "msg_1", sentAt, body)
	if err != nil {
		panic(err)
	}
	header := http.Header{}
	header.Set(callback.HeaderWebhookID, "msg_1")
	header.Set(callback.HeaderWebhookTimestamp, strconv.FormatInt(sentAt.Unix(), 10))
	header.Set(callback.HeaderWebhookSignature, sig)
	fmt.Println(sig)

	// Receiving side: a receiver that already moved to the next secret accepts it; a
	// changed body does not verify; neither does a request from long ago.
	now := sentAt.Add(30 * time.Second) // in a receiver: time.Now()
	fmt.Println(callback.Verify([]string{next}, header, body, now, 5*time.Minute))
	fmt.Println(callback.Verify([]string{next}, header, []byte(`{"event":"job.dead"}`), now, 5*time.Minute))
	fmt.Println(callback.Verify([]string{current}, header, body, now.Add(time.Hour), 5*time.Minute))
	fmt.Println(callback.Verify(nil, header, body, now, 5*time.Minute))
	// Output:
	// v1,l53M07LKgKMCSoCGJCpI+DVrveJDXsNZX8bsMzNQhJY= v1,EtgiN+akO/mC5o1IWbcW68KZfDt7W5wysrunVMiMtHI=
	// <nil>
	// callback: no signature matches the body (wrong secret, or the body, id or timestamp was changed)
	// callback: timestamp is 1h0m30s old; at most 5m0s allowed
	// callback: no secret to verify with
}
