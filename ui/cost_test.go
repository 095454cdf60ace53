package ui_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nightshift-jobs/nightshift"
	"github.com/nightshift-jobs/nightshift/internal/store/storetest"
	"github.com/nightshift-jobs/nightshift/internal/testenv"
	"github.com/nightshift-jobs/nightshift/record"
	"github.com/nightshift-jobs/nightshift/ui"
)

// TestPageCosts counts the storage calls of the overview, the jobs page and the filtered
// dead letters among 3,000 status records of the last day (2 kinds; 30 dead, 3 running)
// and 300 dead-letter records, and a 200-step workflow's page, on memory: the overview and the listings ask the index
// and never list a container, and their reads are bounded by the page or the matches, not
// by the jobs (docs/dashboard.md).
func TestPageCosts(t *testing.T) {
	mem := testenv.Memory(t)
	ctx := context.Background()
	now := time.Now().UTC()
	const n = 3000
	var wg sync.WaitGroup
	sem := make(chan struct{}, 32)
	for i := range n {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			end := now.Add(-time.Duration(i) * 24 * time.Hour / n)
			st := &record.Status{JobID: fmt.Sprintf("job-%05d", i), Kind: []string{"a.kind", "b.kind"}[i%2], Queue: mem.Layout.JobsQueue(),
				State: record.StateSucceeded, Attempt: 1, EnqueuedAt: end.Add(-time.Duration(1+i%7) * time.Second), FinishedAt: end, UpdatedAt: end}
			switch {
			case i%100 == 7:
				st.State = record.StateDead
			case i < 3:
				st.State, st.FinishedAt = record.StateRunning, time.Time{}
			}
			if _, err := mem.PutStatus(ctx, st, ""); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	// 300 dead letters, 3 of them permanent errors.
	for i := range 300 {
		d := &record.DeadLetter{DeadID: fmt.Sprintf("dead-%05d", i), Kind: "a.kind", Reason: record.ReasonAttemptsExhausted, Cause: record.CauseJob,
			DiedAt: now.Add(-time.Duration(i) * time.Minute)}
		if i%100 == 5 {
			d.Kind, d.Reason = "b.kind", record.ReasonPermanentError
		}
		if _, err := mem.PutDeadLetter(ctx, d, ""); err != nil {
			t.Fatal(err)
		}
	}
	// A workflow of 200 steps: its page reads its record only.
	wp := nightshift.WorkflowParams{WorkflowID: "wf-cost", Steps: []nightshift.WorkflowStepSpec{{Name: "s0", Args: echoArgs{Msg: "0"}}}}
	for i := 1; i < 200; i++ {
		wp.Steps = append(wp.Steps, nightshift.WorkflowStepSpec{Name: fmt.Sprintf("s%d", i), Args: echoArgs{Msg: "n"}, DependsOn: []string{"s0"}})
	}
	if _, err := nightshift.NewClient(mem, nil).StartWorkflow(ctx, wp); err != nil {
		t.Fatal(err)
	}
	count := storetest.NewCounting(mem.Store())
	c := nightshift.NewClient(mem.WithStore(count), nil)
	token := ui.NewToken()
	srv := httptest.NewServer(ui.Handler(c, ui.Options{Token: token, Kinds: func() []string { return []string{"a.kind", "b.kind"} }}))
	defer srv.Close()
	jar, _ := cookiejar.New(nil)
	hc := &http.Client{Jar: jar}
	get := func(path string) (int, map[string]int) {
		t.Helper()
		count.Reset()
		resp, err := hc.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("%s: %d", path, resp.StatusCode)
		}
		calls := count.Calls()
		return count.Total(), calls
	}
	get("/login?token=" + url.QueryEscape(token))
	for _, tc := range []struct {
		path string
		max  int
	}{
		// 6 queue counts, 3 outcome Finds (1 page each), at most 420 sample reads, 2 kinds × 6 states.
		{"/", 6 + 3 + 420 + 12},
		// One Find (3,000 matches in one page) and the page's 50 reads.
		{"/jobs", 1 + 50},
		{"/jobs?state=dead", 1 + 30},
		{"/jobs?kind=a.kind&state=succeeded&since=1h", 1 + 50},
		// Filtered dead letters: one Find and a read per match (3 of 300).
		{"/dead?reason=permanent_error", 1 + 3},
		{"/dead?kind=b.kind&cause=job", 1 + 3},
		// A workflow of 200 steps: one read of its record.
		{"/workflows/wf-cost", 1},
	} {
		total, calls := get(tc.path)
		t.Logf("%s: %d storage calls %v", tc.path, total, calls)
		if total > tc.max {
			t.Errorf("%s made %d storage calls, more than %d: %v", tc.path, total, tc.max, calls)
		}
		for m := range calls {
			if strings.HasPrefix(m, "List") {
				t.Errorf("%s listed a container (%s): %v", tc.path, m, calls)
			}
		}
	}
}
