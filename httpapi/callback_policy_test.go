package httpapi_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"testing"

	"github.com/nightshift-jobs/nightshift"
	"github.com/nightshift-jobs/nightshift/callback"
	"github.com/nightshift-jobs/nightshift/httpapi"
	"github.com/nightshift-jobs/nightshift/internal/testenv"
)

// newCallbackEnv is newEnv with the API's client checking callbacks as handler/main.go
// wires it: callback.Options.CheckCallback from the callback settings.
func newCallbackEnv(t *testing.T, settings map[string]string) (*env, callback.Options) {
	t.Helper()
	store := testenv.Clients(t)
	opts, err := callback.FromEnv(func(k string) string { return settings[k] })
	if err != nil {
		t.Fatal(err)
	}
	reg := nightshift.NewRegistry()
	nightshift.AddWorkerFunc(reg, func(ctx context.Context, job *nightshift.Job[echoArgs]) (any, error) {
		return map[string]string{"echo": job.Args.Text}, nil
	}, nil)
	if err := callback.Register(reg, store, opts); err != nil {
		t.Fatal(err)
	}
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	h := nightshift.NewHandler(reg, store, &nightshift.HandlerOptions{Logger: quiet, OnJobEnd: callback.OnJobEnd(store), OnWorkflowEnd: callback.OnWorkflowEnd(store)})
	client := nightshift.NewClient(store, &nightshift.ClientOptions{CheckCallback: opts.CheckCallback})
	httpapi.New(client, &httpapi.Options{Kinds: reg.Kinds, Logger: quiet}).Register(h)
	return &env{t: t, store: store, client: client, h: h}, opts
}

// TestEnqueueRefusesUnconfiguredCallbacks: POST /api/jobs answers 400 for a webhook to
// an origin without a secret and for a callback queue that is not listed (nightshift's
// own poison queue included), naming the field and the setting but not listing what is
// configured; listed targets are accepted.
func TestEnqueueRefusesUnconfiguredCallbacks(t *testing.T) {
	const configuredOrigin = "https://receiver-configured.example"
	const listedQueue = "callback-events-listed"
	e, _ := newCallbackEnv(t, map[string]string{
		callback.SettingWebhookSecrets: `{"` + configuredOrigin + `": "whsec_AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="}`,
		callback.SettingCallbackQueues: listedQueue,
	})
	poison := e.store.Layout.PoisonQueue(e.store.Layout.JobsQueue())
	for _, tc := range []struct {
		name, callback, field, setting string
	}{
		{"webhook origin without secret", `{"url":"https://other-receiver.example/hook"}`, "callback.url", callback.SettingWebhookSecrets},
		{"configured host, other port", `{"url":"` + configuredOrigin + `:8443/hook"}`, "callback.url", callback.SettingWebhookSecrets},
		{"poison queue", fmt.Sprintf(`{"queue":%q}`, poison), "callback.queue", callback.SettingCallbackQueues},
		{"jobs queue", fmt.Sprintf(`{"queue":%q}`, e.store.Layout.JobsQueue()), "callback.queue", callback.SettingCallbackQueues},
		{"unlisted queue", `{"queue":"some-other-queue"}`, "callback.queue", callback.SettingCallbackQueues},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res := e.enqueue(`{"kind":"test.echo","args":{"text":"x"},"callback":` + tc.callback + `}`)
			if res.status != 400 {
				t.Fatalf("status %d, body %s; want 400", res.status, res.body)
			}
			body := string(res.body)
			p := res.json(t)
			errs, _ := p["errors"].([]any)
			if len(errs) != 1 || !strings.Contains(body, `"`+tc.field+`"`) || !strings.Contains(body, tc.setting) {
				t.Fatalf("problem %s; want one error on %s naming %s", body, tc.field, tc.setting)
			}
			if strings.Contains(body, "receiver-configured") && !strings.Contains(tc.callback, "receiver-configured") || strings.Contains(body, listedQueue) || strings.Contains(body, "whsec_") {
				t.Fatalf("problem %s lists what is configured", body)
			}
		})
	}
	for _, cb := range []string{`{"url":"` + configuredOrigin + `/hook"}`, `{"queue":"` + listedQueue + `"}`} {
		if res := e.enqueue(`{"kind":"test.echo","args":{"text":"x"},"callback":` + cb + `}`); res.status/100 != 2 {
			t.Errorf("callback %s: status %d, body %s; want accepted", cb, res.status, res.body)
		}
	}
}
