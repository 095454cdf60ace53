package callback

import (
	"fmt"
	"slices"
	"strings"

	"github.com/nightshift-jobs/nightshift/envelope"
	"github.com/nightshift-jobs/nightshift/storage"
)

// ParseCallbackQueues reads the NIGHTSHIFT_CALLBACK_QUEUES setting: a comma-separated
// list of full queue names a callback may name. An empty setting allows none. Errors are
// *storage.SettingError naming the setting.
func ParseCallbackQueues(setting string) ([]string, error) {
	if strings.TrimSpace(setting) == "" {
		return nil, nil
	}
	var out []string
	for i, q := range strings.Split(setting, ",") {
		q = strings.TrimSpace(q)
		if q == "" {
			return nil, &storage.SettingError{Setting: SettingCallbackQueues, Problem: fmt.Sprintf("entry %d is empty; give comma-separated queue names", i+1)}
		}
		if p := storage.ValidQueueName(q); p != "" {
			return nil, &storage.SettingError{Setting: SettingCallbackQueues, Problem: fmt.Sprintf("queue %q %s", envelope.Truncate(q, 64), p)}
		}
		if slices.Contains(out, q) {
			return nil, &storage.SettingError{Setting: SettingCallbackQueues, Problem: fmt.Sprintf("names queue %q twice", q)}
		}
		out = append(out, q)
	}
	return out, nil
}

// checkQueues refuses callback queues that are nightshift's own (the job queues of the
// layout) or any poison queue: a callback message there would be run or dead-lettered
// as a job.
func checkQueues(queues []string, layout storage.Layout) error {
	own := layout.Queues()
	for _, q := range queues {
		if p := storage.ValidQueueName(q); p != "" {
			return &storage.SettingError{Setting: SettingCallbackQueues, Problem: fmt.Sprintf("queue %q %s", envelope.Truncate(q, 64), p)}
		}
		if slices.Contains(own, q) || strings.HasSuffix(q, storage.PoisonSuffix) {
			return &storage.SettingError{Setting: SettingCallbackQueues, Problem: fmt.Sprintf("queue %q is one of nightshift's job or poison queues; callbacks need a queue of their own", q)}
		}
	}
	return nil
}
