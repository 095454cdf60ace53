package ui_test

import (
	"context"
	"errors"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"

	"github.com/nightshift-jobs/nightshift"
	"github.com/nightshift-jobs/nightshift/internal/proc"
	"github.com/nightshift-jobs/nightshift/internal/testenv"
	"github.com/nightshift-jobs/nightshift/record"
	"github.com/nightshift-jobs/nightshift/schedule"
	"github.com/nightshift-jobs/nightshift/ui"
)

// chromium returns the path of a Chromium (or Chrome) on PATH. Without one the browser
// test fails under CI=true (.ci/run installs Debian's chromium) and is skipped elsewhere.
func chromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "headless-shell"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("no chromium on PATH; the browser test is required under CI=true (apt-get install chromium)")
	}
	t.Skip("no chromium on PATH (apt-get install chromium)")
	return ""
}

// TestBrowser drives the dashboard in headless Chromium: log in with the token, look at
// the overview, filter the jobs, open a job, cancel a queued job (accepting the confirm
// dialog), replay a dead letter through the confirmation page, then see it succeed, and
// look up a workflow, follow its step's job, and cancel another.
// UPDATE_SCREENSHOTS=1 writes the overview and a job detail to docs/.
func TestBrowser(t *testing.T) {
	bin := chromium(t)
	e := newEnv(t, testenv.Memory(t), ui.Options{Recurring: schedule.Builtin(),
		Limits: func() map[string]nightshift.Limits {
			return map[string]nightshift.Limits{"test.echo": {Concurrency: 3}}
		}})
	e.seed()

	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(bin), chromedp.NoSandbox,
		chromedp.WindowSize(1280, 900), chromedp.ModifyCmdFunc(proc.DieWithParent))
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelBrowser := chromedp.NewContext(actx)
	var pid int
	t.Cleanup(func() {
		cancelBrowser()
		cancelAlloc() // kills the browser and waits for it
		if pid != 0 {
			if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
				t.Errorf("chromium (pid %d) still runs after the cleanup: %v", pid, err)
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
	})
	run := func(what string, steps ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		sctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		defer cancel()
		if err := chromedp.Do(sctx, steps...); err != nil {
			html, _ := chromedp.Run(ctx, chromedp.Evaluate[string]("location.href + '\\n' + document.body.innerText"))
			t.Fatalf("%s: %v; the page is %s", what, err, html)
		}
	}
	text := func(sel string) string {
		t.Helper()
		s, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(sel)))
		if err != nil {
			t.Fatalf("text of %s: %v", sel, err)
		}
		return strings.TrimSpace(s)
	}
	screenshot := func(name string) {
		t.Helper()
		img, err := chromedp.Run(ctx, chromedp.FullScreenshot(100)) // 100: PNG
		if err != nil {
			t.Fatalf("screenshot: %v", err)
		}
		saveShot(t, name, img)
	}
	// The first call starts the browser, for as long as ctx lives (no step timeout).
	if err := chromedp.Do(ctx, chromedp.Navigate("about:blank")); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	if b := chromedp.FromContext(ctx).Browser; b != nil && b.Process() != nil {
		pid = b.Process().Pid
	}
	// Accept confirm() dialogs (the cancel button asks).
	dialogs := chromedp.Events(ctx, page.JavascriptDialogOpening)
	go func() {
		for _, err := range dialogs {
			if err != nil {
				return
			}
			_, _ = chromedp.Call(ctx, page.HandleJavaScriptDialog, page.HandleJavaScriptDialogParams{Accept: true})
		}
	}()
	base := e.srv.URL

	// The login form, with the token.
	run("log in",
		chromedp.Navigate(base+"/jobs"),
		chromedp.WaitVisible(chromedp.ID("token")),
		chromedp.SendKeys(chromedp.ID("token"), e.token),
		chromedp.Click(chromedp.ID("login")),
		chromedp.WaitVisible(chromedp.ID("job-filters")),
	)
	run("overview", chromedp.Navigate(base+"/"), chromedp.WaitVisible(chromedp.CSS("svg.chart")))
	if q := text("#queues"); !strings.Contains(q, e.store.Layout.JobsQueue()) {
		t.Fatalf("overview queues: %q", q)
	}
	screenshot("dashboard-overview.png")

	// Filter the jobs by state, then open one.
	run("filter jobs",
		chromedp.Navigate(base+"/jobs"),
		chromedp.WaitVisible(chromedp.ID("f-state")),
		chromedp.SetValue(chromedp.ID("f-state"), "succeeded"),
		chromedp.Click(chromedp.ID("f-apply")),
		chromedp.WaitReady(chromedp.CSS(`select#f-state option[value="succeeded"][selected]`)),
	)
	if rows := text("#jobs tbody"); strings.Count(rows, "echo-") != 3 || strings.Contains(rows, "fail-1") || strings.Contains(rows, "queued-1") {
		t.Fatalf("jobs filtered by succeeded: %q", rows)
	}
	run("open a job", chromedp.Click(chromedp.CSS(`a[href="/jobs/echo-2"]`)), chromedp.WaitVisible(chromedp.ID("result")))
	if logs := text("#logs"); !strings.Contains(logs, "hello echo-2") {
		t.Fatalf("job logs: %q", logs)
	}
	screenshot("dashboard-job.png")

	run("batches and schedules",
		chromedp.Navigate(base+"/batches"), chromedp.WaitVisible(chromedp.ID("batches")),
		chromedp.Navigate(base+"/schedules"), chromedp.WaitVisible(chromedp.ID("recurring")),
	)
	if rec := text("#recurring"); !strings.Contains(strings.ToLower(rec), "maintenance") {
		t.Fatalf("schedules: %q", rec)
	}

	// Flow control: pause a kind through its confirm dialog, see it listed, resume it.
	run("pause a kind",
		chromedp.Navigate(base+"/flow"),
		chromedp.WaitVisible(chromedp.ID("p-kind")),
		chromedp.SendKeys(chromedp.ID("p-kind"), "test.echo"),
		chromedp.Click(chromedp.ID("pause-kind-go")),
		chromedp.WaitVisible(chromedp.ID("notice")),
	)
	if rows := text("#paused tbody"); !strings.Contains(rows, "kind") || !strings.Contains(rows, "test.echo") {
		t.Fatalf("paused after the pause: %q", rows)
	}
	if p, err := e.c.Pauses(context.Background()); err != nil || p.Kinds["test.echo"].IsZero() {
		t.Fatalf("pauses after the browser paused test.echo: %+v %v", p, err)
	}
	run("resume the kind",
		chromedp.Click(chromedp.CSS("#paused button.resume")),
		chromedp.WaitVisible(chromedp.ID("notice")),
		chromedp.WaitReady(chromedp.CSS("#paused td.muted")),
	)
	if p, err := e.c.Pauses(context.Background()); err != nil || len(p.Kinds) != 0 {
		t.Fatalf("pauses after the browser resumed: %+v %v", p, err)
	}
	if lim := text("#limits"); !strings.Contains(lim, "test.echo") {
		t.Fatalf("flow limits: %q", lim)
	}

	// Cancel the queued job with its button (and the confirm dialog).
	run("cancel a job",
		chromedp.Navigate(base+"/jobs/queued-1"),
		chromedp.WaitVisible(chromedp.ID("cancel")),
		chromedp.Click(chromedp.ID("cancel")),
		chromedp.WaitVisible(chromedp.ID("notice")),
	)
	if st := text("#job-state"); st != "cancelled" {
		t.Fatalf("after cancel the job shows %q", st)
	}

	// Cancel a running job: its page shows the progress; the handler notices the
	// cancellation and ends the attempt.
	e.drain() // queued-1's message, skipped: it is cancelled
	e.enqueue(slowArgs{}, "slow-1")
	ended := e.startOne()
	testenv.WaitFor(t, 30*time.Second, "slow-1 running with progress", func() bool {
		st, err := e.c.Status(context.Background(), "slow-1")
		return err == nil && st.State == record.StateRunning && st.Progress != nil
	})
	run("cancel a running job",
		chromedp.Navigate(base+"/jobs/slow-1"),
		chromedp.WaitVisible(chromedp.ID("progress")),
		chromedp.Click(chromedp.ID("cancel")),
		chromedp.WaitVisible(chromedp.ID("notice")),
	)
	if st := text("#job-state"); st != "cancelled" {
		t.Fatalf("after cancelling the running job it shows %q", st)
	}
	select {
	case <-ended:
	case <-time.After(30 * time.Second):
		t.Fatal("the cancelled job's attempt did not end")
	}
	if st, _ := e.c.Status(context.Background(), "slow-1"); st.State != record.StateCancelled {
		t.Fatalf("slow-1 after its attempt ended: %s", st.State)
	}

	// Open the dead letter from the filtered list: its args are redacted.
	run("open a dead letter",
		chromedp.Navigate(base+"/dead?reason=permanent_error"),
		chromedp.WaitVisible(chromedp.ID("dead")),
		chromedp.Click(chromedp.CSS(`#dead a[href="/dead/fail-1"]`)),
		chromedp.WaitVisible(chromedp.ID("args")),
	)
	if args := text("#args"); !strings.Contains(args, "visible note") || strings.Contains(args, "hunter2") || strings.Contains(args, "4111-1111") {
		t.Fatalf("dead letter args: %q", args)
	}
	if st := text("#dead-job-state"); st != "dead" {
		t.Fatalf("dead letter's job state: %q", st)
	}

	// Replay the dead letter: filter, pick it, confirm on the next page.
	run("replay a dead letter",
		chromedp.Navigate(base+"/dead?reason=permanent_error"),
		chromedp.WaitVisible(chromedp.ID("dead")),
		chromedp.Click(chromedp.CSS(`input.pick[value="fail-1"]`)),
		chromedp.Click(chromedp.ID("replay-picked")),
		chromedp.WaitVisible(chromedp.ID("confirm")),
	)
	if plan := text("#replay-plan"); !strings.Contains(plan, "1 dead letters selected") {
		t.Fatalf("replay plan: %q", plan)
	}
	if st, _ := e.c.Status(context.Background(), "fail-1"); st.State != record.StateDead {
		t.Fatalf("fail-1 before the confirmation: %s", st.State)
	}
	run("confirm the replay", chromedp.Click(chromedp.ID("confirm")), chromedp.WaitVisible(chromedp.ID("replay-report")))
	if rep := text("#replay-report"); !strings.Contains(rep, "1 replayed") {
		t.Fatalf("replay report: %q", rep)
	}
	e.drain()
	run("see the replay succeed", chromedp.Navigate(base+"/jobs/fail-1"), chromedp.WaitVisible(chromedp.ID("job-state")))
	if st := text("#job-state"); st != "succeeded" {
		t.Fatalf("fail-1 after the replay: %q", st)
	}

	// A workflow: look it up by id with the form, see every step, open a step's job and
	// follow its link back; then cancel a running workflow through its confirm dialog.
	if _, err := e.c.StartWorkflow(context.Background(), chain("wf-b")); err != nil {
		t.Fatal(err)
	}
	e.drain()
	run("look up a workflow",
		chromedp.Navigate(base+"/workflows"),
		chromedp.WaitVisible(chromedp.ID("w-id")),
		chromedp.SendKeys(chromedp.ID("w-id"), "wf-b"),
		chromedp.Click(chromedp.ID("w-open")),
		chromedp.WaitVisible(chromedp.ID("steps")),
	)
	if st, steps := text("#workflow-state"), text("#steps tbody"); st != "succeeded" || strings.Count(steps, "succeeded") != 3 {
		t.Fatalf("workflow wf-b: %q, steps %q", st, steps)
	}
	run("a step's job and back",
		chromedp.Click(chromedp.CSS(`#steps tbody tr:nth-child(2) td:nth-child(6) a`)),
		chromedp.WaitVisible(chromedp.ID("workflow-link")),
		chromedp.Click(chromedp.ID("workflow-link")),
		chromedp.WaitVisible(chromedp.ID("steps")),
	)
	if _, err := e.c.StartWorkflow(context.Background(), chain("wf-c")); err != nil {
		t.Fatal(err)
	}
	run("cancel a workflow",
		chromedp.Navigate(base+"/workflows/wf-c"),
		chromedp.WaitVisible(chromedp.ID("cancel-workflow")),
		chromedp.Click(chromedp.ID("cancel-workflow")),
		chromedp.WaitVisible(chromedp.ID("notice")),
	)
	if st := text("#workflow-state"); st != "cancelled" {
		t.Fatalf("after cancel the workflow shows %q", st)
	}
	e.drain() // wf-c's first step, skipped: it is cancelled

	// The dashboard mounted as the Dashboard function, through the local host, which
	// checks the function key: open it with ?code=, follow the navigation, filter (a GET
	// form: its hidden field keeps the key) and cancel a job (a POST from a no-referrer
	// page: the browser sends Origin null, the CSRF token decides).
	mstore := testenv.Clients(t)
	mapp := mountedApp(t, mstore)
	if _, err := mapp.Client().Enqueue(context.Background(), echoArgs{Msg: "m"}, &nightshift.EnqueueOptions{JobID: "queued-m"}); err != nil {
		t.Fatal(err)
	}
	mbase, stopHost := localHost(t, mapp, mstore)
	defer stopHost()
	run("mounted: open with the key",
		chromedp.Navigate(mbase+"/?code="+url.QueryEscape(functionKey)), chromedp.WaitVisible(chromedp.CSS("svg.chart")))
	run("mounted: filter the jobs",
		chromedp.Click(chromedp.CSS(`header nav a[href^="/api/ui/jobs?"]`)),
		chromedp.WaitVisible(chromedp.ID("f-state")),
		chromedp.SetValue(chromedp.ID("f-state"), "queued"),
		chromedp.Click(chromedp.ID("f-apply")),
		chromedp.WaitReady(chromedp.CSS(`select#f-state option[value="queued"][selected]`)),
	)
	if rows := text("#jobs tbody"); !strings.Contains(rows, "queued-m") {
		t.Fatalf("mounted jobs filtered by queued: %q", rows)
	}
	run("mounted: cancel a job",
		chromedp.Click(chromedp.CSS(`a[href^="/api/ui/jobs/queued-m?"]`)),
		chromedp.WaitVisible(chromedp.ID("cancel")),
		chromedp.Click(chromedp.ID("cancel")),
		chromedp.WaitVisible(chromedp.ID("notice")),
	)
	if st := text("#job-state"); st != "cancelled" {
		t.Fatalf("mounted: after cancel the job shows %q", st)
	}
	href, err := chromedp.Run(ctx, chromedp.Evaluate[string]("location.href"))
	if err != nil || !strings.Contains(href, "code="+url.QueryEscape(functionKey)) {
		t.Fatalf("mounted: the page after the cancel is %q (%v), without the key", href, err)
	}
}

// saveShot writes a screenshot to docs/ when UPDATE_SCREENSHOTS=1.
func saveShot(t *testing.T, name string, img []byte) {
	t.Helper()
	if os.Getenv("UPDATE_SCREENSHOTS") != "1" {
		return
	}
	if err := os.WriteFile(filepath.Join(testenv.RepoRoot(), "docs", name), img, 0o644); err != nil {
		t.Fatal(err)
	}
}
