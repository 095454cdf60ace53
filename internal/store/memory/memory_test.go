package memory_test

import (
	"testing"
	"time"

	"github.com/nightshift-jobs/nightshift/internal/store/memory"
	"github.com/nightshift-jobs/nightshift/internal/store/storetest"
)

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) storetest.Harness {
		clock := memory.NewFakeClock(time.Date(2026, 1, 2, 3, 4, 5, 600_000_000, time.UTC))
		return storetest.Harness{Store: memory.New(clock.Now), Sleep: clock.Advance}
	})
}
