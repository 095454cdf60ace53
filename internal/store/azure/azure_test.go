package azure_test

import (
	"testing"
	"time"

	"github.com/nightshift-jobs/nightshift/internal/store/azure"
	"github.com/nightshift-jobs/nightshift/internal/store/storetest"
	"github.com/nightshift-jobs/nightshift/internal/testenv"
	"github.com/nightshift-jobs/nightshift/storage"
)

// TestConformance runs the conformance suite against Azurite (failing, never skipping,
// under CI=true; see internal/testenv). The suite names its queues and containers with
// fresh random names and deletes them.
func TestConformance(t *testing.T) {
	c, err := storage.FromEnv(testenv.Env(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	s := azure.New(c.Queue, c.Blob)
	storetest.Run(t, func(t *testing.T) storetest.Harness {
		return storetest.Harness{Store: s, Sleep: time.Sleep}
	})
}
