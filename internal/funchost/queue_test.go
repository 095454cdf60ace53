package funchost

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/storage/azqueue/v2"
	"github.com/nightshift-jobs/nightshift/internal/testenv"
)

func unmarshalString(t *testing.T, raw json.RawMessage) string {
	t.Helper()
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		t.Fatalf("%s is not a JSON string: %v", raw, err)
	}
	return s
}

var (
	isoNoFraction = regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00$`)
	utcNow7       = regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{7}Z$`)
	guidRE        = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)
)

func TestQueue_1_5_PayloadShape(t *testing.T) {
	t.Parallel()
	a := newApp(t, testHostJSON{}.render(), map[string]string{"ProcessOrder": queueFn("{{p}}-orders")})
	q := a.createQueue("{{p}}-orders")
	a.run(Options{})
	msg := `{"key":"shape","do":"ok","id":"custom-id","qty":2,"price":1.5,"flag":true,"when":"2024-05-01T10:00:00Z",` +
		`"customer":{"name":"Ann"},"tags":["x"],"nothing":null,"myTrigger":"dropped","html":"<a&b>"}`
	realID := a.enqueue(q, msg)
	testenv.WaitFor(t, 20*time.Second, "the invocation", func() bool { return len(a.records_("shape")) == 1 })
	testenv.WaitFor(t, 10*time.Second, "the message to be deleted", func() bool { return approxCount(t, q) == 0 })
	rec := a.records_("shape")[0]

	// §1.4: POST /{FunctionName} with the host's headers.
	if rec.Path != "/ProcessOrder" {
		t.Errorf("path %q, want /ProcessOrder", rec.Path)
	}
	hdr := func(k string) string {
		for hk, v := range rec.Headers {
			if strings.EqualFold(hk, k) {
				return v[0]
			}
		}
		return ""
	}
	if !guidRE.MatchString(hdr("X-Azure-Functions-InvocationId")) {
		t.Errorf("X-Azure-Functions-InvocationId %q", hdr("X-Azure-Functions-InvocationId"))
	}
	if hdr("X-Azure-Functions-HostVersion") != HostVersion || hdr("User-Agent") != "Azure-Functions-Host/"+HostVersion {
		t.Errorf("host version headers: %v", rec.Headers)
	}
	if hdr("Content-Type") != "application/json; charset=utf-8" {
		t.Errorf("Content-Type %q", hdr("Content-Type"))
	}
	var body struct {
		Data     map[string]json.RawMessage
		Metadata map[string]json.RawMessage
	}
	if err := json.Unmarshal(rec.Body, &body); err != nil {
		t.Fatal(err)
	}
	// §1.4.1: the trigger value is double-encoded.
	if got := unmarshalString(t, body.Data["msg"]); got != string(marshalJSON(msg)) {
		t.Errorf("Data.msg decodes once to %s, want the JSON text of the message", got)
	}
	md := body.Metadata
	wantStr := map[string]string{
		"DequeueCount": "1",
		"Id":           `"custom-id"`, // a message property "id" overwrites Id (§1.5)
		"qty":          `"2"`,
		"price":        `"1.5"`,
		"flag":         `"True"`,
		"when":         `"05/01/2024 10:00:00"`,
		"html":         `"<a&b>"`,
		"key":          `"shape"`,
	}
	for k, want := range wantStr {
		if got := unmarshalString(t, md[k]); got != want {
			t.Errorf("Metadata.%s = %s, want JSON string %s", k, md[k], want)
		}
	}
	if realID == "custom-id" {
		t.Fatal("test is meaningless")
	}
	pop := unmarshalString(t, md["PopReceipt"])
	if !strings.HasPrefix(pop, `"`) || !strings.HasSuffix(pop, `"`) {
		t.Errorf("PopReceipt not double-encoded: %s", md["PopReceipt"])
	}
	for _, k := range []string{"InsertionTime", "ExpirationTime", "NextVisibleTime"} {
		if s := unmarshalString(t, md[k]); !isoNoFraction.MatchString(s) {
			t.Errorf("Metadata.%s = %q, want ISO without fraction, +00:00", k, s)
		}
	}
	if string(md["customer"]) != `{"name":"Ann"}` {
		t.Errorf("nested object: %s", md["customer"])
	}
	for _, k := range []string{"tags", "nothing", "myTrigger", "QueueTrigger"} {
		if _, ok := md[k]; ok {
			t.Errorf("Metadata.%s should be absent", k)
		}
	}
	var sys struct{ MethodName, UtcNow, RandGuid string }
	if err := json.Unmarshal(md["sys"], &sys); err != nil {
		t.Fatalf("sys is not an object: %s", md["sys"])
	}
	if sys.MethodName != "ProcessOrder" || !utcNow7.MatchString(sys.UtcNow) || !guidRE.MatchString(sys.RandGuid) {
		t.Errorf("sys = %+v", sys)
	}
	// §1.2: the handler's environment.
	for _, k := range []string{"FUNCTIONS_CUSTOMHANDLER_PORT", "FUNCTIONS_HTTPWORKER_PORT", "FUNCTIONS_CUSTOMHANDLER_WORKER_ID", "FUNCTIONS_HTTPWORKER_ID", "FUNCTIONS_APP_ROOT_PATH", "TESTHANDLER_DIR"} {
		if rec.Env[k] == "" {
			t.Errorf("handler env %s not set", k)
		}
	}
	if rec.Env["FUNCTIONS_CUSTOMHANDLER_PORT"] != rec.Env["FUNCTIONS_HTTPWORKER_PORT"] || rec.Env["CWD"] != a.dir || rec.Env["FUNCTIONS_APP_ROOT_PATH"] != a.dir {
		t.Errorf("handler env: %v (app %s)", rec.Env, a.dir)
	}
}

func TestQueue_1_5_BinaryDataTypeSingleBase64(t *testing.T) {
	t.Parallel()
	a := newApp(t, testHostJSON{}.render(), map[string]string{"Bin": `{"bindings":[{"name":"msg","type":"queueTrigger","direction":"in","queueName":"{{p}}-bin","dataType":"binary"}]}`})
	q := a.createQueue("{{p}}-bin")
	a.run(Options{})
	msg := `{"key":"bin","do":"ok","extra":"x"}`
	a.enqueue(q, msg)
	testenv.WaitFor(t, 20*time.Second, "the invocation", func() bool { return len(a.records_("bin")) == 1 })
	var body struct {
		Data     map[string]json.RawMessage
		Metadata map[string]json.RawMessage
	}
	must(t, json.Unmarshal(a.records_("bin")[0].Body, &body))
	if got := unmarshalString(t, body.Data["msg"]); got != base64.StdEncoding.EncodeToString([]byte(msg)) {
		t.Errorf("Data.msg = %s, want one base64 string of the message", body.Data["msg"])
	}
	if _, ok := body.Metadata["extra"]; ok {
		t.Error("dataType binary must not add JSON properties to Metadata")
	}
}

func TestQueue_2_3_FifthFailurePoisons(t *testing.T) {
	t.Parallel()
	a := newApp(t, testHostJSON{MaxDequeueCount: 5}.render(), map[string]string{"Work": queueFn("{{p}}-work")})
	q := a.createQueue("{{p}}-work")
	a.run(Options{})
	msg := `{"key":"five","do":"fail"}`
	a.enqueue(q, msg)
	poison := a.queue("{{p}}-work-poison")
	testenv.WaitFor(t, 30*time.Second, "the poison message", func() bool { return len(peekAll(t, poison)) == 1 })
	if got := peekAll(t, poison)[0]; got != msg {
		t.Errorf("poison body %q, want the original %q", got, msg)
	}
	testenv.WaitFor(t, 10*time.Second, "the original to be deleted", func() bool { return approxCount(t, q) == 0 })
	recs := a.records_("five")
	if len(recs) != 5 {
		t.Fatalf("handler ran %d times, want 5", len(recs))
	}
	for i, r := range recs {
		var body struct{ Metadata map[string]json.RawMessage }
		must(t, json.Unmarshal(r.Body, &body))
		if dc := unmarshalString(t, body.Metadata["DequeueCount"]); dc != string(rune('1'+i)) {
			t.Errorf("attempt %d had DequeueCount %s", i+1, dc)
		}
	}
	if !a.logs.Contains("Message has reached MaxDequeueCount of 5. Moving message to queue '" + a.prefix + "-work-poison'.") {
		t.Error("missing the host's poison warning")
	}
}

func TestQueue_2_3_FailureRetriedUntilSuccess(t *testing.T) {
	t.Parallel()
	a := newApp(t, testHostJSON{MaxDequeueCount: 5}.render(), map[string]string{"Work": queueFn("{{p}}-retry")})
	q := a.createQueue("{{p}}-retry")
	a.run(Options{})
	a.enqueue(q, `{"key":"retry","do":"failuntil","n":3}`)
	testenv.WaitFor(t, 30*time.Second, "three attempts", func() bool { return len(a.records_("retry")) == 3 })
	testenv.WaitFor(t, 10*time.Second, "the message to be deleted", func() bool { return approxCount(t, q) == 0 })
	if n := approxCount(t, a.queue("{{p}}-retry-poison")); n > 0 {
		t.Errorf("poison queue has %d messages", n)
	}
}

func TestQueue_2_3_DequeueCountSixPoisonedWithoutInvocation(t *testing.T) {
	t.Parallel()
	a := newApp(t, testHostJSON{MaxDequeueCount: 5}.render(), map[string]string{"Work": queueFn("{{p}}-six")})
	q := a.createQueue("{{p}}-six")
	msg := `{"key":"six","do":"ok"}`
	a.enqueue(q, msg)
	ctx := context.Background()
	// Receive it five times (as five crashed deliveries would), making it visible again each time.
	for i := 0; i < 5; i++ {
		resp, err := q.DequeueMessage(ctx, &azqueue.DequeueMessageOptions{VisibilityTimeout: ptr(int32(60))})
		must(t, err)
		if len(resp.Messages) != 1 {
			t.Fatalf("receive %d got %d messages", i+1, len(resp.Messages))
		}
		m := resp.Messages[0]
		_, err = q.UpdateMessage(ctx, *m.MessageID, *m.PopReceipt, *m.MessageText, &azqueue.UpdateMessageOptions{VisibilityTimeout: ptr(int32(0))})
		must(t, err)
	}
	a.run(Options{})
	poison := a.queue("{{p}}-six-poison")
	testenv.WaitFor(t, 20*time.Second, "the poison message", func() bool { return len(peekAll(t, poison)) == 1 })
	testenv.WaitFor(t, 10*time.Second, "the original to be deleted", func() bool { return approxCount(t, q) == 0 })
	if n := len(a.records_("six")); n != 0 {
		t.Errorf("handler was invoked %d times for a message with DequeueCount 6", n)
	}
}

func TestQueue_2_4_NoPoisonQueueForPoisonQueue(t *testing.T) {
	t.Parallel()
	a := newApp(t, testHostJSON{MaxDequeueCount: 2}.render(), map[string]string{"Dead": queueFn("{{p}}-x-poison")})
	q := a.createQueue("{{p}}-x-poison")
	a.run(Options{ReceiveVisibility: 2 * time.Second})
	a.enqueue(q, `{"key":"pp","do":"fail"}`)
	// Without a poison queue a failed message is left alone and comes back when its
	// receive visibility expires; once DequeueCount > max it is skipped, never moved.
	testenv.WaitFor(t, 30*time.Second, "two attempts", func() bool { return len(a.records_("pp")) == 2 })
	testenv.WaitFor(t, 30*time.Second, "the third delivery to be skipped", func() bool {
		resp, err := q.PeekMessage(context.Background(), nil)
		return err == nil && len(resp.Messages) == 1 && *resp.Messages[0].DequeueCount >= 3
	})
	if n := approxCount(t, a.queue("{{p}}-x-poison-poison")); n != -1 {
		t.Errorf("a poison queue for the poison queue exists (%d messages)", n)
	}
	if n := len(a.records_("pp")); n != 2 {
		t.Errorf("handler ran %d times, want 2", n)
	}
}

func TestQueue_2_6_InvalidBase64ToPoisonUntouched(t *testing.T) {
	t.Parallel()
	a := newApp(t, testHostJSON{Encoding: "base64"}.render(), map[string]string{"Work": queueFn("{{p}}-b64")})
	q := a.createQueue("{{p}}-b64")
	a.run(Options{})
	raw := `{"key":"raw","do":"ok"}` // raw JSON, not base64
	a.enqueue(q, raw)
	good := `{"key":"good","do":"ok"}`
	a.enqueue(q, base64.StdEncoding.EncodeToString([]byte(good)))
	poison := a.queue("{{p}}-b64-poison")
	testenv.WaitFor(t, 20*time.Second, "the poison message", func() bool { return len(peekAll(t, poison)) == 1 })
	if got := peekAll(t, poison)[0]; got != raw {
		t.Errorf("poison body %q, want the raw text %q", got, raw)
	}
	testenv.WaitFor(t, 20*time.Second, "the good message", func() bool { return len(a.records_("good")) == 1 })
	testenv.WaitFor(t, 10*time.Second, "both originals deleted", func() bool { return approxCount(t, q) == 0 })
	if n := len(a.records_("raw")); n != 0 {
		t.Errorf("handler invoked %d times for undecodable base64", n)
	}
	var body struct{ Data map[string]json.RawMessage }
	must(t, json.Unmarshal(a.records_("good")[0].Body, &body))
	if got := unmarshalString(t, body.Data["msg"]); got != string(marshalJSON(good)) {
		t.Errorf("base64 message not decoded: %s", got)
	}
	if !a.logs.Contains("Message decoding has failed! Check MessageEncoding settings.") {
		t.Error("missing the decoding warning")
	}
}

func TestQueue_2_3_VisibilityRenewedWhileRunning(t *testing.T) {
	t.Parallel()
	a := newApp(t, testHostJSON{}.render(), map[string]string{"Work": queueFn("{{p}}-renew")})
	q := a.createQueue("{{p}}-renew")
	// Receive visibility 2 s, renewed every 1 s; the job runs 3.5 s. Without renewals the
	// message would reappear and be delivered a second time while the first run is going.
	a.run(Options{ReceiveVisibility: 2 * time.Second})
	a.enqueue(q, `{"key":"renew","do":"sleep","ms":3500}`)
	testenv.WaitFor(t, 30*time.Second, "the message to be deleted", func() bool {
		return len(a.records_("renew")) >= 1 && approxCount(t, q) == 0
	})
	if n := len(a.records_("renew")); n != 1 {
		t.Errorf("delivered %d times, want 1", n)
	}
}

func TestQueue_2_2_BatchSizeAndNewBatchThreshold(t *testing.T) {
	t.Parallel()
	a := newApp(t, testHostJSON{BatchSize: 4, NewBatchThreshold: 2}.render(), map[string]string{"Work": queueFn("{{p}}-batch")})
	q := a.createQueue("{{p}}-batch")
	for i := 0; i < 12; i++ {
		a.enqueue(q, `{"key":"batch","do":"sleep","ms":400}`)
	}
	a.run(Options{})
	testenv.WaitFor(t, 30*time.Second, "all messages", func() bool { return len(a.records_("batch")) == 12 && approxCount(t, q) == 0 })
	var most int64
	for _, r := range a.records_("batch") {
		most = max(most, r.Concurrent)
	}
	// At most batchSize + newBatchThreshold in flight; more than one at a time.
	if most > 6 || most < 2 {
		t.Errorf("max concurrent invocations %d, want 2..6", most)
	}
}
