package callback_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nightshift-jobs/nightshift"
	"github.com/nightshift-jobs/nightshift/callback"
	"github.com/nightshift-jobs/nightshift/envelope"
	"github.com/nightshift-jobs/nightshift/internal/testenv"
	"github.com/nightshift-jobs/nightshift/record"
	"github.com/nightshift-jobs/nightshift/storage"
)

var testNow = time.Unix(1_800_000_000, 0)

func TestParseWebhookSecrets(t *testing.T) {
	w, err := callback.ParseWebhookSecrets(`{
		"HTTPS://Hooks.Example:443": "` + secret + `",
		"https://rotating.example:8443/": ["` + otherSecret + `", "` + secret + `"],
		"http://[::1]:80": "` + secret + `"
	}`)
	if err != nil {
		t.Fatal(err)
	}
	for url, want := range map[string][]string{
		"https://hooks.example/path?q=1":       {secret},
		"https://HOOKS.example:443/":           {secret},
		"https://rotating.example:8443/x":      {otherSecret, secret},
		"http://[::1]/hook":                    {secret},
		"https://rotating.example/x":           nil, // default port: another origin
		"http://hooks.example/":                nil, // another scheme
		"https://hooks.example.attacker.test/": nil,
	} {
		got, err := w.For(url)
		if want == nil {
			if err == nil || !strings.Contains(err.Error(), callback.SettingWebhookSecrets) {
				t.Errorf("For(%s) = %d secrets, %v; want an error naming the setting", url, len(got), err)
			}
			continue
		}
		if err != nil || strings.Join(got, " ") != strings.Join(want, " ") {
			t.Errorf("For(%s) = %d secrets, %v; want %d", url, len(got), err, len(want))
		}
	}
	if s := w.String(); strings.Contains(s, "whsec_") || !strings.Contains(s, "3 origins") {
		t.Errorf("String() = %q", s)
	}
	if empty, err := callback.ParseWebhookSecrets(" "); err != nil || empty.Len() != 0 {
		t.Errorf("empty setting: %v, %d origins", err, empty.Len())
	}

	for name, tc := range map[string]struct{ setting, want string }{
		"not JSON":               {`{"https://a.example": "` + secret, "not valid JSON"},
		"array":                  {`["` + secret + `"]`, "not a JSON object"},
		"trailing":               {`{"https://a.example": "` + secret + `"} {}`, "content after"},
		"empty secret":           {`{"https://a.example": ""}`, "secret 1 is empty"},
		"empty in list":          {`{"https://a.example": ["` + secret + `", ""]}`, "secret 2 is empty"},
		"empty list":             {`{"https://a.example": []}`, "no secret"},
		"raw secret":             {`{"https://a.example": "plain-text-secret-value"}`, "whsec_<base64>"},
		"not base64":             {`{"https://a.example": "whsec_not*base64!"}`, "standard base64"},
		"short key":              {`{"https://a.example": "whsec_c2hvcnQ="}`, "decodes to 5 bytes"},
		"repeated secret":        {`{"https://a.example": ["` + secret + `", "` + secret + `"]}`, "repeats"},
		"number":                 {`{"https://a.example": 42}`, "secret string or an array"},
		"null":                   {`{"https://a.example": null}`, "secret string or an array"},
		"path":                   {`{"https://a.example/hooks": "` + secret + `"}`, "path, query or fragment"},
		"query":                  {`{"https://a.example?x=1": "` + secret + `"}`, "path, query or fragment"},
		"scheme":                 {`{"ftp://a.example": "` + secret + `"}`, "not an http(s) origin"},
		"no scheme":              {`{"a.example": "` + secret + `"}`, "not an http(s) origin"},
		"user info":              {`{"https://u:p@a.example": "` + secret + `"}`, "user information"},
		"no host":                {`{"https://": "` + secret + `"}`, "no usable host"},
		"bad port":               {`{"https://a.example:99999": "` + secret + `"}`, "port"},
		"duplicate key":          {`{"https://a.example": "` + secret + `", "https://a.example": "` + otherSecret + `"}`, "twice"},
		"duplicate after normal": {`{"https://a.example": "` + secret + `", "HTTPS://A.example:443": "` + otherSecret + `"}`, "twice"},
	} {
		_, err := callback.ParseWebhookSecrets(tc.setting)
		var se *storage.SettingError
		if err == nil || !errors.As(err, &se) || se.Setting != callback.SettingWebhookSecrets || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want a setting error naming %s with %q", name, err, callback.SettingWebhookSecrets, tc.want)
			continue
		}
		for _, s := range []string{secret, otherSecret, "plain-text-secret-value", "not*base64", "c2hvcnQ="} {
			if strings.Contains(err.Error(), strings.TrimPrefix(s, "whsec_")) {
				t.Errorf("%s: error %q shows a secret", name, err)
			}
		}
	}
}

// FuzzWebhookSecrets: the settings parser never panics; what it accepts has only
// normalized origins with usable secrets, and its errors never show a string value of the
// setting that looks like a secret.
func FuzzWebhookSecrets(f *testing.F) {
	for _, s := range []string{
		``, `{}`, `{"https://a.example": "` + secret + `"}`, `{"https://a.example:8443": ["` + secret + `", "` + otherSecret + `"]}`,
		`{"HTTP://[::1]:80/": "` + secret + `"}`, `{"https://a.example": ""}`, `{"https://a.example": "whsec_"}`, `[1]`, `{"x":{}}`,
		`{"https://a.example": "` + secret + `", "https://a.example": "x"}`, `{"https://a%2eexample": "` + secret + `"}`,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, setting string) {
		w, err := callback.ParseWebhookSecrets(setting)
		if err != nil {
			var se *storage.SettingError
			if !errors.As(err, &se) || se.Setting != callback.SettingWebhookSecrets {
				t.Fatalf("error %v is not a setting error for %s", err, callback.SettingWebhookSecrets)
			}
			var m map[string]any
			if json.Unmarshal([]byte(setting), &m) == nil {
				for _, v := range m {
					if s, ok := v.(string); ok && len(s) >= 12 && strings.Contains(err.Error(), s) {
						t.Fatalf("error %q shows the value %q", err, s)
					}
				}
			}
			return
		}
		checkAccepted(t, setting, w)
	})
}

// checkAccepted: every key of an accepted setting is an origin that normalizes to itself
// and has secrets that sign.
func checkAccepted(t *testing.T, setting string, w *callback.WebhookSecrets) {
	if strings.Contains(w.String(), "whsec_") {
		t.Fatalf("String() shows a secret: %s", w)
	}
	var m map[string]json.RawMessage
	if json.Unmarshal([]byte(setting), &m) != nil {
		return
	}
	for key := range m {
		origin, err := callback.Origin(key)
		if err != nil {
			t.Fatalf("accepted key %q is not an origin: %v", key, err)
		}
		again, err := callback.Origin(origin)
		if err != nil || again != origin || origin != strings.ToLower(origin) {
			t.Fatalf("origin %q of key %q does not normalize to itself (%q, %v)", origin, key, again, err)
		}
		secrets, err := w.For(origin + "/hook")
		if err != nil || len(secrets) == 0 {
			t.Fatalf("accepted key %q has no secrets: %v", key, err)
		}
		if _, err := callback.Sign(secrets, "msg", testNow, []byte("{}")); err != nil {
			t.Fatalf("accepted secrets of %q do not sign: %v", key, err)
		}
	}
}

func TestFromEnvSettings(t *testing.T) {
	env := func(kv ...string) func(string) string {
		m := map[string]string{}
		for i := 0; i+1 < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return func(k string) string { return m[k] }
	}
	// The old app-wide secret is a start-up error with the migration in it.
	_, err := callback.FromEnv(env(callback.SettingLegacyWebhookSecret, "old-app-wide-secret"))
	if err == nil || !strings.Contains(err.Error(), callback.SettingLegacyWebhookSecret) || !strings.Contains(err.Error(), callback.SettingWebhookSecrets) ||
		!strings.Contains(err.Error(), "whsec_") || strings.Contains(err.Error(), "old-app-wide-secret") {
		t.Errorf("legacy setting: %v", err)
	}
	if _, err := callback.FromEnv(env(callback.SettingWebhookSecrets, `{"https://a.example": ""}`)); err == nil || !strings.Contains(err.Error(), callback.SettingWebhookSecrets) {
		t.Errorf("empty secret: %v", err)
	}
	for _, bad := range []string{"Callbacks", "a,,b", "ok-queue,ok-queue", "x"} {
		if _, err := callback.FromEnv(env(callback.SettingCallbackQueues, bad)); err == nil || !strings.Contains(err.Error(), callback.SettingCallbackQueues) {
			t.Errorf("%s=%q: %v", callback.SettingCallbackQueues, bad, err)
		}
	}
	o, err := callback.FromEnv(env(callback.SettingWebhookSecrets, `{"https://a.example": "`+secret+`"}`, callback.SettingCallbackQueues, " done-events , audit "))
	if err != nil || o.Secrets.Len() != 1 || strings.Join(o.Queues, ",") != "done-events,audit" {
		t.Fatalf("FromEnv = %+v, %v", o, err)
	}
}

// TestRegisterRefusesNightshiftQueues: a callback queue list naming one of nightshift's
// job queues or any poison queue does not start.
func TestRegisterRefusesNightshiftQueues(t *testing.T) {
	store := testenv.Clients(t)
	l := store.Layout
	for _, q := range []string{l.JobsQueue(), l.HighQueue(), l.LowQueue(), l.PoisonQueue(l.JobsQueue()), l.PoisonQueue(l.LowQueue()), "other-app-poison"} {
		o, err := callback.FromEnv(func(k string) string {
			if k == callback.SettingCallbackQueues {
				return "done-events," + q
			}
			return ""
		})
		if err != nil {
			t.Fatal(err)
		}
		err = callback.Register(nightshift.NewRegistry(), store, o)
		var se *storage.SettingError
		if !errors.As(err, &se) || se.Setting != callback.SettingCallbackQueues || !strings.Contains(err.Error(), q) {
			t.Errorf("queue %s: Register = %v, want a setting error for %s", q, err, callback.SettingCallbackQueues)
		}
	}
}

// TestCallbackRefusedAtDelivery: delivery jobs whose target the enqueue side would have
// refused (a producer without the check, or a hand-made delivery message) end
// permanently, recorded on the job's status: a queue that is not listed (nightshift's own
// poison queue among them) is not written to.
func TestCallbackRefusedAtDelivery(t *testing.T) {
	f := newFixture(t, callback.Options{}, "done-events")
	ctx := context.Background()
	for _, q := range []string{f.store.Layout.PoisonQueue(f.store.Layout.JobsQueue()), f.store.Layout.Name("unlisted")} {
		res, err := f.client.Enqueue(ctx, workArgs{}, &nightshift.EnqueueOptions{CallbackQueue: q})
		if err != nil {
			t.Fatal(err)
		}
		f.runJobs()
		st, _ := f.client.Status(ctx, res.JobID)
		cb := st.Callback
		if st.State != record.StateSucceeded || cb == nil || cb.Delivered || cb.Attempts != 1 || !strings.Contains(cb.LastError, callback.SettingCallbackQueues) {
			t.Fatalf("queue %s: status %s, callback outcome %+v; want refused after 1 attempt naming %s", q, st.State, cb, callback.SettingCallbackQueues)
		}
		ds, err := f.client.Status(ctx, callback.DeliveryID(res.EnqueuedAt, res.JobID, 0, callback.EventSucceeded))
		if err != nil || ds.State != record.StateDead || ds.Attempt != 1 {
			t.Fatalf("queue %s: delivery status = %+v, %v", q, ds, err)
		}
	}
	if dl, err := f.client.DeadLetters(ctx); err != nil || len(dl) != 2 {
		t.Fatalf("dead letters: %d, %v; want only the two refused deliveries (nothing written to the poison queue)", len(dl), err)
	}
}

// TestMissingCallbackQueueNotCreated: a listed queue that does not exist is retried with
// a clear error and never created.
func TestMissingCallbackQueueNotCreated(t *testing.T) {
	f := newFixture(t, callback.Options{MaxAttempts: 3}, "not-created")
	ctx := context.Background()
	target := f.store.Layout.Name("not-created")
	res, err := f.client.Enqueue(ctx, workArgs{}, &nightshift.EnqueueOptions{CallbackQueue: target})
	if err != nil {
		t.Fatal(err)
	}
	f.runJobs()
	st, _ := f.client.Status(ctx, res.JobID)
	cb := st.Callback
	if cb == nil || cb.Delivered || cb.Attempts != 3 || !strings.Contains(cb.LastError, "does not exist") || !strings.Contains(cb.LastError, "never creates") {
		t.Fatalf("callback outcome %+v; want 3 failed attempts saying the queue does not exist", cb)
	}
	if _, err := testenv.QueueService(f.store).NewQueueClient(target).GetProperties(ctx, nil); !storage.IsNotFound(err) {
		t.Fatalf("queue %s: GetProperties = %v; want not found (it must not be created)", target, err)
	}
}

// TestClientCheckCallback: a client with the delivery side's check refuses, at enqueue,
// webhooks to origins without a secret and queues that are not listed, naming the field
// and the setting but not what is configured.
func TestClientCheckCallback(t *testing.T) {
	store := testenv.Clients(t)
	allowed := store.Layout.Name("done-events")
	opts := callback.Options{Secrets: secretsFor(t, "https://configured-receiver.example", secret), Queues: []string{allowed}}
	client := nightshift.NewClient(store, &nightshift.ClientOptions{CheckCallback: opts.CheckCallback})
	ctx := context.Background()
	for _, tc := range []struct {
		opts         nightshift.EnqueueOptions
		field, wants string
	}{
		{nightshift.EnqueueOptions{CallbackURL: "https://elsewhere.example/hook"}, "callback.url", callback.SettingWebhookSecrets},
		{nightshift.EnqueueOptions{CallbackURL: "https://configured-receiver.example:8443/hook"}, "callback.url", callback.SettingWebhookSecrets},
		{nightshift.EnqueueOptions{CallbackQueue: store.Layout.PoisonQueue(store.Layout.JobsQueue())}, "callback.queue", callback.SettingCallbackQueues},
		{nightshift.EnqueueOptions{CallbackQueue: store.Layout.Name("unlisted")}, "callback.queue", callback.SettingCallbackQueues},
	} {
		_, err := client.Enqueue(ctx, workArgs{}, &tc.opts)
		var fe *envelope.FieldError
		if !errors.As(err, &fe) || fe.Field != tc.field || !strings.Contains(fe.Problem, tc.wants) {
			t.Errorf("%+v: %v, want a field error on %s naming %s", tc.opts, err, tc.field, tc.wants)
			continue
		}
		if strings.Contains(err.Error(), "configured-receiver") && !strings.Contains(tc.opts.CallbackURL, "configured-receiver") || strings.Contains(err.Error(), allowed) {
			t.Errorf("error %q lists what is configured", err)
		}
	}
	for _, o := range []nightshift.EnqueueOptions{{CallbackURL: "https://Configured-Receiver.example:443/hook?x=1"}, {CallbackQueue: allowed}} {
		if _, err := client.Enqueue(ctx, workArgs{}, &o); err != nil {
			t.Errorf("%+v: %v", o, err)
		}
	}
}
