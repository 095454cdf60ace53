package nightshift

import (
	"fmt"

	"github.com/nightshift-jobs/nightshift/storage"
)

// Priority chooses one of the three job queues. Each queue has its own queue-trigger
// function (RunJobHigh, RunJob, RunJobLow), so each gets its own listener and its own
// concurrency budget on every instance (batchSize + newBatchThreshold,
// docs/host-contract.md §2.1/§2.2): a high job never waits behind a low backlog. The
// host has no priority across queues; see docs/priorities.md.
type Priority int

// Priorities. The zero value is PriorityNormal.
const (
	PriorityNormal Priority = iota
	PriorityHigh
	PriorityLow
)

// String returns "normal", "high" or "low".
func (p Priority) String() string {
	switch p {
	case PriorityHigh:
		return "high"
	case PriorityLow:
		return "low"
	case PriorityNormal:
		return "normal"
	}
	return fmt.Sprintf("Priority(%d)", int(p))
}

// ParsePriority reads "high", "normal" (or "") and "low".
func ParsePriority(s string) (Priority, error) {
	switch s {
	case "high":
		return PriorityHigh, nil
	case "", "normal":
		return PriorityNormal, nil
	case "low":
		return PriorityLow, nil
	}
	return 0, fmt.Errorf("priority %q: want high, normal or low", s)
}

// QueueFor returns the queue of a priority in the layout: jobs-high, jobs or jobs-low
// (with the layout's prefix).
func QueueFor(l storage.Layout, p Priority) (string, error) {
	switch p {
	case PriorityHigh:
		return l.HighQueue(), nil
	case PriorityNormal:
		return l.JobsQueue(), nil
	case PriorityLow:
		return l.LowQueue(), nil
	}
	return "", fmt.Errorf("priority %d: want PriorityHigh, PriorityNormal or PriorityLow", int(p))
}

// PriorityQueue returns the full name of the queue for priority p on the client's
// storage; pass it as EnqueueOptions.Queue.
func (c *Client) PriorityQueue(p Priority) (string, error) { return QueueFor(c.store.Layout, p) }
