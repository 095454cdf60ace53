package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/nightshift-jobs/nightshift/internal/appfolder"
	"github.com/nightshift-jobs/nightshift/internal/testenv"
	"github.com/nightshift-jobs/nightshift/record"
	"github.com/nightshift-jobs/nightshift/storage"
)

// The handler as the host runs it: settings from the environment, port from
// FUNCTIONS_CUSTOMHANDLER_PORT, readiness on GET /, an invocation shaped like the host's,
// and a drain on shutdown.
func TestRunServesHostRequests(t *testing.T) {
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	hostEnv := testenv.Env(t, "FUNCTIONS_CUSTOMHANDLER_PORT", fmt.Sprint(port))
	store, err := storage.FromEnv(hostEnv, nil)
	if err != nil {
		t.Fatal(err)
	}
	container := store.Layout.Name("inputs")
	env := func(k string) string { // the operator lists the container csv_stats reads
		if k == SettingCSVContainers {
			return container
		}
		return hostEnv(k)
	}
	if err := store.Ensure(context.Background()); err != nil {
		t.Fatal(err)
	}
	_, _ = testenv.BlobService(store).CreateContainer(context.Background(), container, nil)
	if _, err := testenv.BlobService(store).UploadBuffer(context.Background(), container, "x.csv", []byte("n\n1\n2\n"), nil); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx, env, slog.New(slog.NewJSONHandler(io.Discard, nil))) }()
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	for i := 0; ; i++ {
		resp, err := http.Get(base + "/")
		if err == nil {
			resp.Body.Close()
			break
		}
		if i > 400 {
			t.Fatalf("handler never became ready: %v", err)
		}
		time.Sleep(25 * time.Millisecond) // the host's probe interval (§1.3)
	}
	// Every function in functions/ is served: a host invocation of each reaches its code
	// (an empty invocation is refused by it as malformed, not as an unknown function).
	fns, err := appfolder.Functions(testenv.RepoRoot())
	if err != nil || len(fns) == 0 {
		t.Fatalf("functions/: %v %v", fns, err)
	}
	for _, fn := range fns {
		resp, err := http.Post(base+"/"+fn, "application/json", strings.NewReader(`{"Data":{},"Metadata":{}}`))
		if err != nil {
			t.Fatal(err)
		}
		raw, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode == http.StatusNotFound {
			t.Errorf("functions/%s is not served by the handler: %d %s", fn, resp.StatusCode, raw)
		}
	}
	msg := fmt.Sprintf(`{"job_id":"main-1","kind":"csv_stats","args":{"container":%q,"blob":"x.csv"}}`, container)
	inner, _ := json.Marshal(msg)
	data, _ := json.Marshal(string(inner))
	body := fmt.Sprintf(`{"Data":{"message":%s},"Metadata":{"DequeueCount":"1","Id":"\"m-1\"","InsertionTime":"2026-11-23T10:00:00+00:00","sys":{"MethodName":"RunJob","UtcNow":"2026-11-23T10:00:01.0000000Z","RandGuid":"00000000-0000-0000-0000-000000000000"}}}`, data)
	req, _ := http.NewRequest(http.MethodPost, base+"/RunJob", bytes.NewReader([]byte(body)))
	req.Header.Set("Content-Type", "application/json; charset=utf-8")
	req.Header.Set("X-Azure-Functions-InvocationId", "inv-1")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(raw), "succeeded") {
		t.Fatalf("%d %s", resp.StatusCode, raw)
	}
	st, _, err := store.GetStatus(context.Background(), "main-1")
	if err != nil || st.State != record.StateSucceeded || !strings.Contains(string(st.Result.JSON), `"sum":3`) {
		t.Fatalf("%+v %v", st, err)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func TestRunReportsBadSettings(t *testing.T) {
	env := func(m map[string]string) func(string) string { return func(k string) string { return m[k] } }
	log := slog.New(slog.NewJSONHandler(io.Discard, nil))
	err := run(context.Background(), env(map[string]string{"FUNCTIONS_CUSTOMHANDLER_PORT": "1"}), log)
	if err == nil || !strings.Contains(err.Error(), "AzureWebJobsStorage") {
		t.Fatalf("missing storage: %v", err)
	}
	err = run(context.Background(), env(map[string]string{"AzureWebJobsStorage": "UseDevelopmentStorage=true", "FUNCTIONS_CUSTOMHANDLER_PORT": "http"}), log)
	if err == nil || !strings.Contains(err.Error(), `FUNCTIONS_CUSTOMHANDLER_PORT: "http" is not a TCP port`) {
		t.Fatalf("bad port: %v", err)
	}
}

// TestRunRefusesBadCallbackSettings: the handler does not start with the old app-wide
// webhook secret, a malformed NIGHTSHIFT_WEBHOOK_SECRETS (the secret never in the error)
// or a callback queue list naming a nightshift queue.
func TestRunRefusesBadCallbackSettings(t *testing.T) {
	log := slog.New(slog.NewJSONHandler(io.Discard, nil))
	for _, tc := range []struct {
		key, value, want string
	}{
		{"NIGHTSHIFT_WEBHOOK_SECRET", "old-app-wide-secret", "NIGHTSHIFT_WEBHOOK_SECRETS as"},
		{"NIGHTSHIFT_WEBHOOK_SECRETS", `{"https://a.example": "not-a-whsec-secret"}`, "NIGHTSHIFT_WEBHOOK_SECRETS: https://a.example: secret 1 is not in the form"},
		{"NIGHTSHIFT_WEBHOOK_SECRETS", `{"https://a.example": ""}`, "secret 1 is empty"},
		{"NIGHTSHIFT_CALLBACK_QUEUES", "done-events,jobs-poison", `NIGHTSHIFT_CALLBACK_QUEUES: queue "jobs-poison" is one of nightshift's`},
	} {
		m := map[string]string{"AzureWebJobsStorage": "UseDevelopmentStorage=true", "FUNCTIONS_CUSTOMHANDLER_PORT": "1", tc.key: tc.value}
		err := run(context.Background(), func(k string) string { return m[k] }, log)
		if err == nil || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "old-app-wide-secret") || strings.Contains(err.Error(), "not-a-whsec-secret") {
			t.Errorf("%s=%s: %v, want an error containing %q without the secret", tc.key, tc.value, err, tc.want)
		}
	}
}
