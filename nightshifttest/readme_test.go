package nightshifttest_test

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/nightshift-jobs/nightshift"
	"github.com/nightshift-jobs/nightshift/nightshifttest"
	"github.com/nightshift-jobs/nightshift/record"
)

// The code between each "README:" marker and "README end" is the README's, as written
// there (TestREADMEExample compares them, spacing aside).

// README: worker
type ResizeArgs struct {
	Blob  string `json:"blob"`
	Width int    `json:"width"`
}

func (ResizeArgs) Kind() string { return "resize" }

// README end

// readmeRegistry is the README's registry of the resize kind.
func readmeRegistry() *nightshift.Registry {
	// README: worker
	reg := nightshift.NewRegistry()
	nightshift.AddWorkerFunc(reg, func(ctx context.Context, job *nightshift.Job[ResizeArgs]) (any, error) {
		if job.Args.Width <= 0 {
			return nil, nightshift.Permanentf("width must be positive") // no retries
		}
		job.Logger.Info("resizing", "blob", job.Args.Blob)                   // kept in the job's status
		return map[string]string{"thumbnail": job.Args.Blob + ".thumb"}, nil // the result
	}, &nightshift.WorkerOptions{Timeout: time.Minute, MaxAttempts: 5})
	// README end
	return reg
}

// TestREADMEExample runs the README's "Add a job kind" worker and its in-memory test end
// to end on nightshifttest.NewApp (no Azurite), and checks that the README still shows
// this very code.
func TestREADMEExample(t *testing.T) {
	t.Run("runs", func(t *testing.T) {
		ctx := t.Context()
		reg := readmeRegistry()
		// README: app
		app, err := nightshifttest.NewApp(reg, nil)
		if err != nil {
			t.Fatal(err)
		}
		res, err := app.Client.Enqueue(ctx, ResizeArgs{Blob: "in/cat.png", Width: 200}, nil)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := app.Drain(ctx); err != nil { // plays the host's queue triggers until nothing is left
			t.Fatal(err)
		}
		st := nightshifttest.RequireSucceeded(ctx, t, app, res.JobID) // fails the test unless it did
		if string(st.Result.JSON) != `{"thumbnail":"in/cat.png.thumb"}` {
			t.Errorf("result %s", st.Result.JSON)
		}
		nightshifttest.RequireEnqueued(ctx, t, app, "resize", &nightshifttest.RequireOptions{Args: ResizeArgs{Blob: "in/cat.png", Width: 200}})
		// README end

		if st.Attempt != 1 || len(st.Logs) != 1 || !strings.HasPrefix(st.Logs[0].Message, "resizing") {
			t.Errorf("attempt %d, logs %+v", st.Attempt, st.Logs)
		}
		// The README's envelope from another language, and a width that makes it dead.
		if _, err := app.Client.EnqueueRaw(ctx, "resize", []byte(`{"blob":"in/cat.png","width":200}`), &nightshift.EnqueueOptions{JobID: "raw"}); err != nil {
			t.Fatal(err)
		}
		bad, err := app.Client.Enqueue(ctx, ResizeArgs{Blob: "in/dog.png"}, nil)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := app.Drain(ctx); err != nil {
			t.Fatal(err)
		}
		nightshifttest.RequireSucceeded(ctx, t, app, "raw")
		dl := nightshifttest.RequireDied(ctx, t, app, bad.JobID)
		if dl.Reason != record.ReasonPermanentError || len(dl.Errors) != 1 || dl.Detail != "permanent: width must be positive" {
			t.Errorf("dead letter %+v", dl)
		}
		nightshifttest.RequireEnqueuedN(ctx, t, app, "resize", 2, &nightshifttest.RequireOptions{State: record.StateSucceeded})
	})
	t.Run("matches the README", func(t *testing.T) {
		readme, err := os.ReadFile("../README.md")
		if err != nil {
			t.Fatal(err)
		}
		self, err := os.ReadFile("readme_test.go")
		if err != nil {
			t.Fatal(err)
		}
		section := string(readme)
		if i := strings.Index(section, "## Add a job kind"); i >= 0 {
			section = section[i:]
		}
		if i := strings.Index(section, "\n## "); i >= 0 {
			section = section[:i]
		}
		for _, name := range []string{"worker", "app"} {
			code := normalize(marked(string(self), name))
			if code == "" {
				t.Fatalf("no %q code in readme_test.go", name)
			}
			if !strings.Contains(normalize(section), code) {
				t.Errorf("README.md's \"Add a job kind\" no longer shows the %q code of readme_test.go:\n%s", name, marked(string(self), name))
			}
		}
	})
}

// marked returns the lines between each "// README: name" marker and "// README end".
func marked(src, name string) string {
	var out []string
	in := false
	for _, line := range strings.Split(src, "\n") {
		switch strings.TrimSpace(line) {
		case "// README: " + name:
			in = true
		case "// README end":
			in = false
		default:
			if in {
				out = append(out, line)
			}
		}
	}
	return strings.Join(out, "\n")
}

// normalize drops indentation, the spacing gofmt aligns and blank lines, so that code
// in a Go file and in Markdown compare.
func normalize(s string) string {
	var out []string
	for _, line := range strings.Split(s, "\n") {
		if f := strings.Fields(line); len(f) > 0 {
			out = append(out, strings.Join(f, " "))
		}
	}
	return strings.Join(out, "\n")
}
