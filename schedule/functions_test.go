package schedule

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nightshift-jobs/nightshift/internal/testenv"
)

// TestRepositoryFunctionsUpToDate fails when functions/ drifts from the Go declarations of
// the shipped handler (Builtin): run `go run ./cmd/nightshift generate`.
func TestRepositoryFunctionsUpToDate(t *testing.T) {
	dir := filepath.Join(testenv.RepoRoot(), "functions")
	drift, err := Check(dir, Builtin(), GenerateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range drift {
		t.Errorf("functions/%s — run `go run ./cmd/nightshift generate`", d)
	}
}

func TestWriteFunctionsAndCheck(t *testing.T) {
	dir := t.TempDir()
	decls := []Recurring{
		{Name: "Nightly", Schedule: "0 0 3 * * *", Kind: "k", RunOnStartup: true},
		{Name: "Hourly", Schedule: "0 0 * * * *", Kind: "k", PastDue: PastDueSkip},
	}
	// A stale generated folder and a hand-written function that must survive.
	if err := os.MkdirAll(filepath.Join(dir, "RecurringGone"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(dir, "RunJob"), 0o755); err != nil {
		t.Fatal(err)
	}
	drift, err := Check(dir, decls, GenerateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got := len(drift); got != 4 { // 2 recurring + sweep missing, 1 stale
		t.Errorf("drift before writing = %v, want 4 entries", drift)
	}
	changed, err := WriteFunctions(dir, decls, GenerateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(changed) != 4 {
		t.Errorf("changed = %v", changed)
	}
	if _, err := os.Stat(filepath.Join(dir, "RecurringGone")); !os.IsNotExist(err) {
		t.Error("stale RecurringGone folder not removed")
	}
	if _, err := os.Stat(filepath.Join(dir, "RunJob")); err != nil {
		t.Error("hand-written RunJob folder removed")
	}
	if drift, _ := Check(dir, decls, GenerateOptions{}); len(drift) != 0 {
		t.Errorf("drift after writing = %v", drift)
	}
	var doc struct {
		Bindings []map[string]any `json:"bindings"`
	}
	b, err := os.ReadFile(filepath.Join(dir, "RecurringNightly", "function.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{"name": "timer", "type": "timerTrigger", "direction": "in",
		"schedule": "%NIGHTSHIFT_SCHEDULE_NIGHTLY%", "runOnStartup": true, "useMonitor": true}
	if len(doc.Bindings) != 1 {
		t.Fatalf("bindings %v", doc.Bindings)
	}
	for k, v := range want {
		if doc.Bindings[0][k] != v {
			t.Errorf("binding %s = %v, want %v", k, doc.Bindings[0][k], v)
		}
	}
	// A hand edit is drift.
	if err := os.WriteFile(filepath.Join(dir, "RecurringHourly", "function.json"), []byte(strings.Replace(string(b), "NIGHTLY", "HOURLY", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	drift, _ = Check(dir, decls, GenerateOptions{})
	if len(drift) != 1 || drift[0].Problem != "differs" || drift[0].Path != "RecurringHourly/function.json" {
		t.Errorf("drift after a hand edit = %v", drift)
	}
	if s := DefaultSettings(decls); s["NIGHTSHIFT_SCHEDULE_HOURLY"] != "0 0 * * * *" || len(s) != 2 {
		t.Errorf("DefaultSettings = %v", s)
	}
}

func TestMaintenanceSettingConst(t *testing.T) {
	if got := Maintenance().Setting(); got != SettingMaintenanceSchedule {
		t.Errorf("Maintenance().Setting() = %q, SettingMaintenanceSchedule = %q", got, SettingMaintenanceSchedule)
	}
}
