package worker

import (
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/nightshift-jobs/nightshift"
	"github.com/nightshift-jobs/nightshift/schedule"
	"github.com/nightshift-jobs/nightshift/storage"
)

func TestAppFSIsAFileSystem(t *testing.T) {
	fsys := appFS{"host.json": []byte("{}"), "RunJob/function.json": []byte(`{"bindings":[]}`), "Tick/function.json": []byte("x")}
	if err := fstest.TestFS(fsys, "host.json", "RunJob/function.json", "Tick/function.json"); err != nil {
		t.Fatal(err)
	}
}

// identityApp is an app on identity-based storage settings (no connection string), with
// the recurring jobs' timers: building it and the worker's host needs no network.
func identityApp(t *testing.T, settings map[string]string) *nightshift.App {
	t.Helper()
	getenv := func(k string) string { return settings[k] }
	log := slog.New(slog.NewJSONHandler(io.Discard, nil))
	app, err := nightshift.NewApp(nightshift.NewRegistry(), nightshift.Config{Getenv: getenv, Logger: log,
		Features: []nightshift.Feature{schedule.Feature(nil)}})
	if err != nil {
		t.Fatalf("NewApp on identity settings: %v", err)
	}
	return app
}

// TestWorkloadIdentitySettings: AzureWebJobsStorage__accountName with no credential
// setting takes azidentity's default chain, which picks Kubernetes workload identity from
// the variables the AKS webhook injects; the app and the worker's host (its queue and
// timer connections) both build on it. Getting a token needs Entra ID and is not tested
// here.
func TestWorkloadIdentitySettings(t *testing.T) {
	token := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(token, []byte("federated-token"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("AZURE_CLIENT_ID", "00000000-0000-0000-0000-000000000001")
	t.Setenv("AZURE_TENANT_ID", "00000000-0000-0000-0000-000000000002")
	t.Setenv("AZURE_FEDERATED_TOKEN_FILE", token)
	for _, credential := range []string{"", "managedidentity"} {
		settings := map[string]string{
			storage.SettingAccountName:          "nightshiftacct",
			storage.SettingCredential:           credential,
			storage.SettingClientID:             "00000000-0000-0000-0000-000000000001",
			schedule.SettingMaintenanceSchedule: schedule.DefaultMaintenanceSchedule,
		}
		app := identityApp(t, settings)
		o := Options{}.withDefaults(app)
		h, err := newHost(app, o)
		if err != nil {
			t.Fatalf("credential %q: the worker's host on identity settings: %v", credential, err)
		}
		var names []string
		for _, fn := range h.Functions() {
			names = append(names, fn.Name)
		}
		if got := strings.Join(names, ","); !strings.Contains(got, "RunJob,") || !strings.Contains(got, "ScheduleSweep") || strings.Contains(got, "API") {
			t.Errorf("credential %q: functions %s, want the queue and timer functions and no HTTP ones", credential, got)
		}
	}
}

func TestDefaultHostID(t *testing.T) {
	for prefix, want := range map[string]string{"": "nightshift-worker", "t0123456789": "nightshift-worker-t0123456789", "averyveryverylongprefix": "nightshift-worker-averyveryveryl"} {
		if got := defaultHostID(prefix); got != want {
			t.Errorf("defaultHostID(%q) = %q, want %q", prefix, got, want)
		}
	}
}

func TestAppFilesSelectQueuesAndTimers(t *testing.T) {
	mem, err := storage.NewMemory("tq", nil)
	if err != nil {
		t.Fatal(err)
	}
	app, err := nightshift.NewApp(nightshift.NewRegistry(), nightshift.Config{Store: mem, Logger: slog.New(slog.NewJSONHandler(io.Discard, nil)),
		Getenv: func(string) string { return "" }, Features: []nightshift.Feature{schedule.Feature(nil)}})
	if err != nil {
		t.Fatal(err)
	}
	names := func(o Options) string {
		t.Helper()
		files, err := appFiles(app, o.withDefaults(app))
		if err != nil {
			t.Fatalf("appFiles(%+v): %v", o, err)
		}
		var out []string
		for p := range files {
			if p != "host.json" {
				out = append(out, strings.TrimSuffix(p, "/function.json"))
			}
		}
		slices.Sort(out)
		return strings.Join(out, ",")
	}
	if got, want := names(Options{}), "RecurringMaintenance,RunDeadLetter,RunDeadLetterHigh,RunDeadLetterLow,RunJob,RunJobHigh,RunJobLow,ScheduleSweep"; got != want {
		t.Errorf("default: %s, want %s", got, want)
	}
	if got, want := names(Options{Queues: []string{"jobs-high"}, NoTimers: true}), "RunDeadLetterHigh,RunJobHigh"; got != want {
		t.Errorf("--queues jobs-high --no-timers: %s, want %s", got, want)
	}
	if got, want := names(Options{Queues: []string{"jobs-low-poison"}}), "RecurringMaintenance,RunDeadLetterLow,ScheduleSweep"; got != want {
		t.Errorf("--queues jobs-low-poison: %s, want %s", got, want)
	}
	files, _ := appFiles(app, Options{Queues: []string{"jobs"}}.withDefaults(app))
	if !strings.Contains(string(files["RunJob/function.json"]), `"queueName": "tq-jobs"`) {
		t.Errorf("RunJob listens on the layout's queue name:\n%s", files["RunJob/function.json"])
	}
	_, err = appFiles(app, Options{Queues: []string{"nosuch"}}.withDefaults(app))
	var se *storage.SettingError
	if !errors.As(err, &se) || se.Setting != SettingQueues {
		t.Errorf("--queues nosuch: %v, want a SettingError naming %s", err, SettingQueues)
	}
}
