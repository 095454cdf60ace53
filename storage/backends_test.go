package storage_test

import (
	"testing"

	"github.com/nightshift-jobs/nightshift/internal/testenv"
	"github.com/nightshift-jobs/nightshift/storage"
)

// forBackends runs test once per storage backend (Azurite and memory), each with fresh
// clients on their own prefix.
func forBackends(t *testing.T, test func(t *testing.T, c *storage.Clients)) {
	t.Helper()
	for _, b := range testenv.Backends() {
		t.Run(b.Name, func(t *testing.T) { test(t, b.Clients(t)) })
	}
}
