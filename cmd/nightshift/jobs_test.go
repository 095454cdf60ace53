package main

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nightshift-jobs/nightshift/record"
	"github.com/nightshift-jobs/nightshift/storage"
)

// TestJobsFiltersAndReindex lists jobs by the indexed filters, shows that a record
// written before the index is found only by --scan until `jobs reindex` tags it, and
// refuses malformed filters as usage errors.
func TestJobsFiltersAndReindex(t *testing.T) {
	e := newCLIEnv(t)
	ctx := context.Background()
	now := time.Now().UTC()
	for _, st := range []*record.Status{
		{JobID: "j-dead", Kind: "cli.ok", Queue: e.store.Layout.HighQueue(), BatchID: "b7", State: record.StateDead, UpdatedAt: now},
		{JobID: "j-ok", Kind: "cli.ok", Queue: e.store.Layout.JobsQueue(), State: record.StateSucceeded, UpdatedAt: now},
	} {
		if _, err := e.store.PutStatus(ctx, st, ""); err != nil {
			t.Fatal(err)
		}
	}
	old := &record.Status{JobID: "j-old", Kind: "cli.ok", State: record.StateDead, UpdatedAt: now}
	if _, err := e.store.PutJSON(ctx, e.store.Layout.StatusContainer(), storage.StatusBlob("j-old"), old, ""); err != nil {
		t.Fatal(err)
	}
	list := func(args ...string) string {
		t.Helper()
		out, errOut, code := e.run("", append([]string{"jobs"}, args...)...)
		if code != exitOK {
			t.Fatalf("jobs %v: exit %d: %s", args, code, errOut)
		}
		return out
	}
	for args, want := range map[string][]string{
		"--state dead":                          {"j-dead"},
		"--state dead --scan":                   {"j-dead", "j-old"},
		"--queue " + e.store.Layout.JobsQueue(): {"j-ok"},
		"--batch b7":                            {"j-dead"},
		"--kind cli.ok --since 1h":              {"j-dead", "j-ok"},
		"--state dead --until 1h":               nil,
	} {
		out := list(strings.Fields(args)...)
		for _, id := range []string{"j-dead", "j-ok", "j-old"} {
			if strings.Contains(out, id) != slices.Contains(want, id) {
				t.Errorf("jobs %s:\n%s\nwant exactly %v", args, out, want)
			}
		}
	}
	out, errOut, code := e.run("", "jobs", "reindex")
	if code != exitOK || !strings.Contains(out, "3 status records, 1 given their index tags") {
		t.Fatalf("jobs reindex: exit %d: %s%s", code, out, errOut)
	}
	if out := list("--state", "dead"); !strings.Contains(out, "j-old") || !strings.Contains(out, "j-dead") {
		t.Fatalf("after reindex, jobs --state dead:\n%s", out)
	}
	for _, bad := range [][]string{{"--until", "yesterday"}, {"--state", "gone"}, {"--limit", "0"}} {
		if _, _, code := e.run("", append([]string{"jobs"}, bad...)...); code != exitUsage {
			t.Errorf("jobs %v: exit %d, want %d", bad, code, exitUsage)
		}
	}
}
