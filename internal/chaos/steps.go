package chaos

import (
	"context"
	"fmt"
	"time"

	"github.com/nightshift-jobs/nightshift"
	"github.com/nightshift-jobs/nightshift/internal/testenv"
)

// StepsKind is the checkpointing job kind the chaos handler registers.
const StepsKind = "chaos.steps"

// StepsArgs are a chaos.steps job's arguments: how many steps, each taking MS
// milliseconds.
type StepsArgs struct {
	Steps int `json:"steps"`
	MS    int `json:"ms"`
}

// Kind implements nightshift.JobArgs.
func (StepsArgs) Kind() string { return StepsKind }

// StepRunID names the run records (testenv.RecordRun) of step i of job jobID.
func StepRunID(jobID string, i int) string { return fmt.Sprintf("%s.step-%03d", jobID, i) }

// Steps is the chaos.steps job: it resumes from its checkpoint (the next step to run),
// then runs each remaining step (recording its start, sleeping a.MS) and checkpoints the
// next step after it. It returns the number of steps.
func Steps(ctx context.Context, dir, jobID string, a StepsArgs) (int, error) {
	next := 0
	if _, err := nightshift.Resume(ctx, &next); err != nil {
		return 0, err
	}
	for ; next < a.Steps; next++ {
		testenv.RecordRun(dir, StepRunID(jobID, next))
		t := time.NewTimer(time.Duration(a.MS) * time.Millisecond)
		select {
		case <-ctx.Done():
			t.Stop()
			return 0, ctx.Err()
		case <-t.C:
		}
		if err := nightshift.Checkpoint(ctx, next+1); err != nil {
			return 0, err
		}
	}
	return next, nil
}

// WorkflowStepKind is the workflow step kind the chaos handler registers.
const WorkflowStepKind = "chaos.wfstep"

// WorkflowStepArgs are a chaos.wfstep job's arguments: it returns N plus the results of
// the steps named in Deps (nightshift.StepResult), or fails permanently with Fail.
type WorkflowStepArgs struct {
	N    int      `json:"n"`
	Deps []string `json:"deps,omitempty"`
	Fail bool     `json:"fail,omitempty"`
}

// Kind implements nightshift.JobArgs.
func (WorkflowStepArgs) Kind() string { return WorkflowStepKind }

// WorkflowStep is the chaos.wfstep job; each run is recorded (testenv.RecordRun) under
// the job id.
func WorkflowStep(ctx context.Context, dir, jobID string, a WorkflowStepArgs) (int, error) {
	testenv.RecordRun(dir, jobID)
	if a.Fail {
		return 0, nightshift.Permanentf("step fails")
	}
	sum := a.N
	for _, d := range a.Deps {
		var v int
		if err := nightshift.StepResult(ctx, d, &v); err != nil {
			return 0, err
		}
		sum += v
	}
	return sum, nil
}
