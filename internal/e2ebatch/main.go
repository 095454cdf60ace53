// Command e2ebatch is a nightshift custom handler for the end-to-end tests and the
// benchmark of batches, priorities, claim checks and progress through the local Functions
// host (package funchost): the real handler code (nightshift.Serve) with test job kinds.
//
// When E2E_DIR is set, every run of a job appends a line to $E2E_DIR/runs/<job id>, so
// tests can count runs, and the handler writes its pid to $E2E_DIR/pid-<pid> at start-up,
// so tests can kill it.
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"

	"github.com/nightshift-jobs/nightshift"
	"github.com/nightshift-jobs/nightshift/internal/testenv"
	"github.com/nightshift-jobs/nightshift/record"
	"github.com/nightshift-jobs/nightshift/storage"
)

// SqArgs squares I after sleeping MS milliseconds; Fail makes it fail permanently.
type SqArgs struct {
	I    int  `json:"i"`
	MS   int  `json:"ms,omitempty"`
	Fail bool `json:"fail,omitempty"`
}

// Kind implements nightshift.JobArgs.
func (SqArgs) Kind() string { return "e2e.sq" }

// SumArgs is a batch finalizer: it sums its children's results.
type SumArgs struct{}

// Kind implements nightshift.JobArgs.
func (SumArgs) Kind() string { return "e2e.sum" }

// SumResult is the finalizer's result.
type SumResult struct {
	Sum       int `json:"sum"`
	Succeeded int `json:"succeeded"`
	Failed    int `json:"failed"`
}

// NoopArgs does nothing (the benchmark's children and independent jobs).
type NoopArgs struct{}

// Kind implements nightshift.JobArgs.
func (NoopArgs) Kind() string { return "e2e.noop" }

// CountArgs is the benchmark's finalizer: it only counts its children's outcomes from
// the batch record (no per-child reads).
type CountArgs struct{}

// Kind implements nightshift.JobArgs.
func (CountArgs) Kind() string { return "e2e.count" }

func mark(id string) {
	if dir := os.Getenv(testenv.EnvRunsDir); dir != "" {
		testenv.RecordRun(filepath.Join(dir, "runs"), id)
	}
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	if dir := os.Getenv("E2E_DIR"); dir != "" {
		_ = os.MkdirAll(filepath.Join(dir, "runs"), 0o755)
		_ = os.WriteFile(filepath.Join(dir, fmt.Sprintf("pid-%d", os.Getpid())), nil, 0o644)
	}
	log := slog.New(slog.NewJSONHandler(os.Stdout, &slog.HandlerOptions{Level: slog.LevelWarn}))
	reg := nightshift.NewRegistry()
	nightshift.AddWorkerFunc(reg, func(ctx context.Context, job *nightshift.Job[SqArgs]) (any, error) {
		mark(job.ID)
		if job.Args.MS > 0 {
			select {
			case <-time.After(time.Duration(job.Args.MS) * time.Millisecond):
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
		if job.Args.Fail {
			return nil, nightshift.Permanentf("child %d fails on purpose", job.Args.I)
		}
		return job.Args.I * job.Args.I, nil
	}, nil)
	nightshift.AddWorkerFunc(reg, func(ctx context.Context, job *nightshift.Job[SumArgs]) (any, error) {
		mark(job.ID)
		children, err := nightshift.BatchChildren(ctx, job.BatchID)
		if err != nil {
			return nil, err
		}
		var r SumResult
		for i, c := range children {
			if c.State != record.StateSucceeded {
				r.Failed++
				continue
			}
			var v int
			if err := json.Unmarshal(c.Result, &v); err != nil {
				return nil, fmt.Errorf("child %d result %q: %w", i, c.Result, err)
			}
			r.Sum += v
			r.Succeeded++
			if i%100 == 0 {
				job.Progress(ctx, float64(i)/float64(len(children)), fmt.Sprintf("%d of %d children", i, len(children)))
			}
		}
		return r, nil
	}, nil)
	nightshift.AddWorkerFunc(reg, func(ctx context.Context, job *nightshift.Job[NoopArgs]) (any, error) {
		return nil, nil
	}, nil)
	nightshift.AddWorkerFunc(reg, func(ctx context.Context, job *nightshift.Job[CountArgs]) (any, error) {
		mark(job.ID)
		bs, err := nightshift.JobClient(ctx).Batch(ctx, job.BatchID, nil)
		if err != nil {
			return nil, err
		}
		return map[string]int{"succeeded": bs.Succeeded, "failed": bs.Failed}, nil
	}, nil)
	opts := &nightshift.ServeOptions{Logger: log}
	if os.Getenv(EnvCountCalls) != "" {
		store, err := countingStore(ctx)
		if err != nil {
			fmt.Fprintln(os.Stderr, "e2ebatch:", err)
			os.Exit(1)
		}
		opts.Store = store
	}
	if err := nightshift.Serve(ctx, reg, opts); err != nil {
		fmt.Fprintln(os.Stderr, "e2ebatch:", err)
		os.Exit(1)
	}
}

// EnvCountCalls makes the handler count its storage calls and write the count to
// $E2E_DIR/calls-<pid> every 200 ms (the benchmark's storage calls per job).
const EnvCountCalls = "E2E_COUNT_CALLS"

// CountingTransport counts the storage requests it sends.
type CountingTransport struct {
	Next  policy.Transporter
	Calls atomic.Int64
}

// Do implements policy.Transporter.
func (c *CountingTransport) Do(req *http.Request) (*http.Response, error) {
	c.Calls.Add(1)
	return c.Next.Do(req)
}

func countingStore(ctx context.Context) (*storage.Clients, error) {
	ct := &CountingTransport{Next: http.DefaultClient}
	store, err := storage.FromEnv(os.Getenv, &storage.Options{Transport: ct})
	if err != nil {
		return nil, err
	}
	file := filepath.Join(os.Getenv("E2E_DIR"), fmt.Sprintf("calls-%d", os.Getpid()))
	go func() {
		t := time.NewTicker(200 * time.Millisecond)
		defer t.Stop()
		for {
			_ = os.WriteFile(file, []byte(strconv.FormatInt(ct.Calls.Load(), 10)), 0o644)
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	}()
	return store, nil
}
