package main

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/nightshift-jobs/nightshift/record"
)

// TestWorkflowCommand starts a two-step workflow from a JSON file on stdin (Azurite), runs
// it, shows it as text and JSON, and cancels a second one before it runs.
func TestWorkflowCommand(t *testing.T) {
	e := newCLIEnv(t)
	spec := `{"workflow_id": "wf-cli", "steps": [
		{"name": "hello", "kind": "` + okArgs{}.Kind() + `", "args": {"name": "a"}},
		{"name": "again", "kind": "` + okArgs{}.Kind() + `", "args": {"name": "b"}, "depends_on": ["hello"]}]}`
	out, stderr, code := e.run(spec, "workflow", "start", "-")
	if code != 0 || !strings.Contains(out, "state:    running") {
		t.Fatalf("start: %d %q %q", code, out, stderr)
	}
	e.runJobs()
	e.runJobs()
	out, _, code = e.run("", "workflow", "status", "wf-cli", "--json")
	var w record.Workflow
	if code != 0 || json.Unmarshal([]byte(out), &w) != nil || w.State != record.WorkflowSucceeded || w.Step("again").State != record.StepSucceeded {
		t.Fatalf("status --json: %d %q", code, out)
	}
	out, _, code = e.run("", "workflow", "status", "wf-cli")
	if code != 0 || !strings.Contains(out, "again") || !strings.Contains(out, "succeeded") {
		t.Fatalf("status: %d %q", code, out)
	}
	if out, _, code = e.run(strings.Replace(spec, "wf-cli", "wf-cli-2", 1), "workflow", "start", "-"); code != 0 {
		t.Fatalf("start 2: %d %q", code, out)
	}
	out, _, code = e.run("", "workflow", "cancel", "wf-cli-2", "--json")
	if code != 0 || json.Unmarshal([]byte(out), &w) != nil || w.State != record.WorkflowCancelled {
		t.Fatalf("cancel: %d %q", code, out)
	}
	if _, stderr, code := e.run(`{"steps": [{"name": "x", "kind": "k", "depends_on": ["nope"]}]}`, "workflow", "start", "-"); code != 1 || !strings.Contains(stderr, "not a step") {
		t.Fatalf("invalid workflow: %d %q", code, stderr)
	}
	if _, stderr, code := e.run(`{"steps": [], "extra": 1}`, "workflow", "start", "-"); code != 1 || !strings.Contains(stderr, "unknown field") {
		t.Fatalf("unknown field: %d %q", code, stderr)
	}
	withCB := strings.Replace(strings.Replace(spec, "wf-cli", "wf-cli-3", 1), `"steps"`, `"callback": {"queue": "wf-cli-events"}, "steps"`, 1)
	if out, _, code = e.run(withCB, "workflow", "start", "-", "--json"); code != 0 || json.Unmarshal([]byte(out), &w) != nil || w.Callback == nil || w.Callback.Queue != "wf-cli-events" {
		t.Fatalf("start with a callback: %d %q", code, out)
	}
	if _, _, code := e.run("", "workflow", "status"); code != 2 {
		t.Fatalf("no id: exit %d", code)
	}
}
