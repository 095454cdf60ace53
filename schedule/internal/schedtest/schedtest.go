// Package schedtest holds the job kinds and recurring jobs of the scheduling end-to-end
// tests, shared by the test handler binary and the tests that generate its functions.
package schedtest

import "github.com/nightshift-jobs/nightshift/schedule"

// NoopArgs succeeds at once.
type NoopArgs struct{}

// Kind implements nightshift.JobArgs.
func (NoopArgs) Kind() string { return "sched.noop" }

// FlakyArgs fails its first attempt and succeeds on the second.
type FlakyArgs struct{}

// Kind implements nightshift.JobArgs.
func (FlakyArgs) Kind() string { return "sched.flaky" }

// Declarations are the test recurring jobs; tests pick their schedules with the
// NIGHTSHIFT_SCHEDULE_<NAME> settings and generate the function.json files they need.
func Declarations() []schedule.Recurring {
	return []schedule.Recurring{
		{Name: "Tick", Schedule: "0 0 * * * *", Args: NoopArgs{}},
		{Name: "TickSkip", Schedule: "0 0 * * * *", Args: NoopArgs{}, PastDue: schedule.PastDueSkip},
		{Name: "Flaky", Schedule: "0 0 * * * *", Args: FlakyArgs{}},
	}
}
