package nightshift

import (
	"context"
	"io"
	"log/slog"
	"runtime"
	"sync"
	"testing"

	"github.com/nightshift-jobs/nightshift/internal/store"
	"github.com/nightshift-jobs/nightshift/internal/testenv"
	"github.com/nightshift-jobs/nightshift/record"
	"github.com/nightshift-jobs/nightshift/storage"
)

type stepsArgs struct {
	Steps int `json:"steps"`
}

func (stepsArgs) Kind() string { return "test.steps" }

// stepCounter counts each step's runs and kills the process once at each step of killAt.
type stepCounter struct {
	mu     sync.Mutex
	runs   map[int]int
	killAt map[int]bool
}

func (s *stepCounter) step(i int) (kill bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.runs[i]++
	kill = s.killAt[i]
	delete(s.killAt, i)
	return kill
}

// TestCheckpointSurvivesCrashesWithoutBurningDeliveries: a 10-step job that checkpoints
// after every step dies three times mid-step (runtime.Goexit: the process is gone, nothing
// after that line runs) under a host whose maxDequeueCount is 2. Each redelivery finds the
// checkpoint written under its message and renews it, so the job finishes in its first
// attempt, having re-done only the step each crash interrupted.
func TestCheckpointSurvivesCrashesWithoutBurningDeliveries(t *testing.T) {
	ctx := context.Background()
	st := testenv.Memory(t)
	counter := &stepCounter{runs: map[int]int{}, killAt: map[int]bool{2: true, 5: true, 8: true}}
	reg := NewRegistry()
	AddWorkerFunc(reg, func(ctx context.Context, j *Job[stepsArgs]) (any, error) {
		var state struct{ Next int }
		if _, err := Resume(ctx, &state); err != nil {
			return nil, err
		}
		for i := state.Next; i < j.Args.Steps; i++ {
			if counter.step(i) {
				runtime.Goexit()
			}
			state.Next = i + 1
			if err := Checkpoint(ctx, state); err != nil {
				return nil, err
			}
		}
		return state, nil
	}, nil)
	// A progress interval of 1ns writes every checkpoint at once: a crash loses none.
	h := NewHandler(reg, st, &HandlerOptions{Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), ProgressInterval: 1, MaxDequeueCount: 2})
	client := NewClient(st, nil)
	if _, err := client.Enqueue(ctx, stepsArgs{Steps: 10}, &EnqueueOptions{JobID: "steps-1"}); err != nil {
		t.Fatal(err)
	}
	q := st.Layout.JobsQueue()
	testenv.CrashStorm(t, st, h, FunctionRunJob, q, 2, func(store.Message) bool { return true })
	s, err := client.Status(ctx, "steps-1")
	if err != nil {
		t.Fatal(err)
	}
	if s.State != record.StateSucceeded || s.Attempt != 1 {
		t.Fatalf("status %s attempt %d (%s), want succeeded in attempt 1", s.State, s.Attempt, s.LastError)
	}
	redone := 0
	for i := range 10 {
		switch n := counter.runs[i]; {
		case n == 2 && (i == 2 || i == 5 || i == 8):
			redone++
		case n != 1:
			t.Fatalf("step %d ran %d times; runs %v", i, n, counter.runs)
		}
	}
	if redone != 3 {
		t.Fatalf("%d steps re-done, want the 3 interrupted ones; runs %v", redone, counter.runs)
	}
	if n, _ := st.Store().Count(ctx, st.Layout.PoisonQueue(q)); n != 0 {
		t.Fatalf("%d poison messages, want none", n)
	}
	var cp record.Checkpoint
	if _, err := st.GetJSON(ctx, st.Layout.PayloadsContainer(), storage.CheckpointBlob("steps-1"), &cp); !notFound(err) {
		t.Fatalf("checkpoint of a succeeded job: %v (seq %d), want deleted", err, cp.Seq)
	}
}

// TestCheckpointCrashWithoutProgressUsesTheBudget: a redelivery whose message never
// checkpointed is not renewed, so a job that dies before its first checkpoint reaches
// the poison queue after maxDequeueCount deliveries, as before.
func TestCheckpointCrashWithoutProgressUsesTheBudget(t *testing.T) {
	ctx := context.Background()
	st := testenv.Memory(t)
	reg := NewRegistry()
	AddWorkerFunc(reg, func(ctx context.Context, j *Job[stepsArgs]) (any, error) {
		runtime.Goexit()
		return nil, nil
	}, nil)
	h := NewHandler(reg, st, &HandlerOptions{Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), ProgressInterval: 1, MaxDequeueCount: 2})
	if _, err := NewClient(st, nil).Enqueue(ctx, stepsArgs{Steps: 1}, &EnqueueOptions{JobID: "steps-2"}); err != nil {
		t.Fatal(err)
	}
	q := st.Layout.JobsQueue()
	testenv.CrashStorm(t, st, h, FunctionRunJob, q, 2, func(store.Message) bool { return true })
	if n, _ := st.Store().Count(ctx, st.Layout.PoisonQueue(q)); n != 1 {
		t.Fatalf("%d poison messages, want 1", n)
	}
}

func TestCheckpointBounds(t *testing.T) {
	if err := Checkpoint(context.Background(), 1); err == nil {
		t.Fatal("Checkpoint outside a job: no error")
	}
	if _, err := Resume(context.Background(), new(int)); err == nil {
		t.Fatal("Resume outside a job: no error")
	}
	ctx := withJobContext(context.Background(), &jobContext{checkpoint: &checkpointer{log: slog.New(slog.DiscardHandler), used: func() {}}})
	big := make([]byte, record.MaxCheckpointBytes)
	if err := Checkpoint(ctx, big); err == nil {
		t.Fatal("a checkpoint over the bound was taken")
	}
	if err := Checkpoint(ctx, map[string]int{"next": 3}); err != nil {
		t.Fatal(err)
	}
	var v map[string]int
	if ok, err := Resume(ctx, &v); !ok || err != nil || v["next"] != 3 {
		t.Fatalf("Resume in the same attempt: %v %v %v", ok, err, v)
	}
}
