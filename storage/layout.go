package storage

import (
	"fmt"
	"regexp"
	"strings"
)

// Base names of the queues and containers nightshift uses. docs/storage-layout.md is the
// prose form of this file; infra/bicep creates exactly these (a test checks the two agree).
const (
	// JobsQueue carries job envelopes to the RunJob function (normal priority).
	JobsQueue = "jobs"
	// HighQueue and LowQueue carry high- and low-priority jobs (their own functions).
	HighQueue = "jobs-high"
	LowQueue  = "jobs-low"
	// PoisonSuffix is the Functions host's poison-queue convention: <queue>-poison
	// (docs/host-contract.md §2.4).
	PoisonSuffix = "-poison"
	// StatusContainer holds one status record per job: <job id>.json.
	StatusContainer = "nightshift-status"
	// ResultsContainer holds results too large to inline in the status: <job id>.
	ResultsContainer = "nightshift-results"
	// DeadLettersContainer holds one dead-letter record per dead job or poison message.
	DeadLettersContainer = "nightshift-deadletters"
	// PayloadsContainer holds args and results too large for a queue message (claim check).
	PayloadsContainer = "nightshift-payloads"
	// BatchesContainer holds batch records (fan-out/fan-in state).
	BatchesContainer = "nightshift-batches"
	// UniqueContainer holds dedupe-key locks (unique jobs).
	UniqueContainer = "nightshift-unique"
	// ScheduleContainer holds delayed jobs due beyond the queue's 7-day visibility limit.
	ScheduleContainer = "nightshift-schedule"
	// ReportsContainer holds maintenance summaries.
	ReportsContainer = "nightshift-reports"
	// HostContainer is the Functions host's own container (timer status, singleton locks);
	// the host creates and owns it.
	HostContainer = "azure-webjobs-hosts"
)

var namePrefixRE = regexp.MustCompile(`^[a-z0-9]([a-z0-9]|-[a-z0-9]){0,19}$`)

// Layout names every queue and container, with an optional prefix (NIGHTSHIFT_NAME_PREFIX)
// so that several deployments or test runs can share one account. The zero Layout has no
// prefix and uses the base names.
type Layout struct {
	prefix string
}

// NewLayout returns the layout for a prefix ("" for none). A prefix is 1–20 lowercase
// letters, digits and single hyphens, so every derived name stays a valid queue and
// container name.
func NewLayout(prefix string) (Layout, error) {
	if prefix == "" {
		return Layout{}, nil
	}
	if !namePrefixRE.MatchString(prefix) {
		return Layout{}, &SettingError{SettingNamePrefix, fmt.Sprintf("%q is not 1–20 lowercase letters, digits and single hyphens", prefix)}
	}
	return Layout{prefix: prefix}, nil
}

// Prefix returns the name prefix, "" for none.
func (l Layout) Prefix() string { return l.prefix }

// Name applies the prefix to a base queue or container name.
func (l Layout) Name(base string) string {
	if l.prefix == "" {
		return base
	}
	return l.prefix + "-" + base
}

// JobsQueue is the queue RunJob listens on.
func (l Layout) JobsQueue() string { return l.Name(JobsQueue) }

// HighQueue is the high-priority job queue.
func (l Layout) HighQueue() string { return l.Name(HighQueue) }

// LowQueue is the low-priority job queue.
func (l Layout) LowQueue() string { return l.Name(LowQueue) }

// JobQueues lists the job queues, high priority first.
func (l Layout) JobQueues() []string { return []string{l.HighQueue(), l.JobsQueue(), l.LowQueue()} }

// PoisonQueue is the poison queue the host uses for queue q.
func (l Layout) PoisonQueue(q string) string { return q + PoisonSuffix }

// Queues lists every queue nightshift uses, poison siblings included.
func (l Layout) Queues() []string {
	var out []string
	for _, q := range l.JobQueues() {
		out = append(out, q, l.PoisonQueue(q))
	}
	return out
}

// StatusContainer holds the status records.
func (l Layout) StatusContainer() string { return l.Name(StatusContainer) }

// ResultsContainer holds out-of-line results.
func (l Layout) ResultsContainer() string { return l.Name(ResultsContainer) }

// DeadLettersContainer holds the dead-letter records.
func (l Layout) DeadLettersContainer() string { return l.Name(DeadLettersContainer) }

// PayloadsContainer holds claim-checked payloads.
func (l Layout) PayloadsContainer() string { return l.Name(PayloadsContainer) }

// BatchesContainer holds batch records.
func (l Layout) BatchesContainer() string { return l.Name(BatchesContainer) }

// UniqueContainer holds dedupe-key locks.
func (l Layout) UniqueContainer() string { return l.Name(UniqueContainer) }

// ScheduleContainer holds far-future delayed jobs.
func (l Layout) ScheduleContainer() string { return l.Name(ScheduleContainer) }

// ReportsContainer holds maintenance summaries.
func (l Layout) ReportsContainer() string { return l.Name(ReportsContainer) }

// Containers lists every container nightshift writes (not the host's own).
func (l Layout) Containers() []string {
	return []string{l.StatusContainer(), l.ResultsContainer(), l.DeadLettersContainer(), l.PayloadsContainer(),
		l.BatchesContainer(), l.UniqueContainer(), l.ScheduleContainer(), l.ReportsContainer()}
}

// StatusBlob is the blob name of a job's status record.
func StatusBlob(jobID string) string { return jobID + ".json" }

// CheckpointBlob is the blob name, in the payloads container, of a job's checkpoint
// (record.Checkpoint).
func CheckpointBlob(jobID string) string { return jobID + "/checkpoint.json" }

// WorkflowBlob is the blob name, in the batches container, of a workflow record
// (record.Workflow).
func WorkflowBlob(workflowID string) string { return "workflows/" + workflowID + ".json" }

// ResultBlob is the blob name of a job's out-of-line result.
func ResultBlob(jobID string) string { return jobID }

// ValidQueueName reports why name is not a valid queue name ("" when it is): 3–63
// lowercase letters, digits and single hyphens, not starting or ending with a hyphen
// (docs/host-contract.md §2.1).
func ValidQueueName(name string) string {
	switch {
	case len(name) < 3 || len(name) > 63:
		return "must be 3–63 characters"
	case strings.Contains(name, "--"):
		return "must not contain consecutive hyphens"
	case strings.HasPrefix(name, "-") || strings.HasSuffix(name, "-"):
		return "must not start or end with a hyphen"
	}
	for _, r := range name {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-') {
			return "may contain only lowercase letters, digits and hyphens"
		}
	}
	return ""
}
