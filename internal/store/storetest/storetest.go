// Package storetest is the conformance suite of the storage boundary: one set of tests
// that every driver of package store must pass, so that the in-memory driver and the
// Azure driver (against Azurite) are held to the same semantics.
//
// Time-dependent cases (visibility timeouts, delays, message time to live, lease expiry)
// let time pass through Harness.Sleep: a real sleep for a service, a fake clock's Advance
// for the memory driver. They use the shortest durations the service accepts (one
// second, fifteen for leases) and never assert on how long anything took.
package storetest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"testing"
	"time"

	"github.com/nightshift-jobs/nightshift/internal/store"
)

// Harness is what the suite needs of a driver.
type Harness struct {
	// Store is the driver under test. Every case makes its own queues and containers
	// with fresh random names and deletes them at the end.
	Store store.Store
	// Sleep lets d pass for the driver.
	Sleep func(d time.Duration)
}

// Run runs every conformance case as a parallel subtest of t, each with a harness from
// newHarness (called once per case, from the subtest).
func Run(t *testing.T, newHarness func(t *testing.T) Harness) {
	for _, c := range cases() {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			c.run(t, newHarness(t))
		})
	}
}

// Cases returns the number of conformance cases Run runs.
func Cases() int { return len(cases()) }

type testCase struct {
	name string
	run  func(t *testing.T, h Harness)
}

func cases() []testCase {
	return append(append(append(queueCases(), blobCases()...), leaseCases()...), tagCases()...)
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return c
}

// name returns a fresh valid queue or container name.
func name() string {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return "st" + hex.EncodeToString(b)
}

// newQueue creates a fresh queue that is deleted at the end of the test.
func newQueue(t *testing.T, h Harness) string {
	t.Helper()
	q := name()
	if err := h.Store.CreateQueue(ctx(t), q); err != nil {
		t.Fatalf("CreateQueue(%s): %v", q, err)
	}
	t.Cleanup(func() { _ = h.Store.DeleteQueue(context.Background(), q) })
	return q
}

// newContainer creates a fresh container that is deleted at the end of the test.
func newContainer(t *testing.T, h Harness) string {
	t.Helper()
	c := name()
	if err := h.Store.CreateContainer(ctx(t), c); err != nil {
		t.Fatalf("CreateContainer(%s): %v", c, err)
	}
	t.Cleanup(func() { _ = h.Store.DeleteContainer(context.Background(), c) })
	return c
}

// is fails the test unless errors.Is(err, want) (want nil: err must be nil).
func is(t *testing.T, what string, err, want error) {
	t.Helper()
	if want == nil {
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		return
	}
	if !errors.Is(err, want) {
		t.Fatalf("%s: got error %v, want one wrapping %q", what, err, want)
	}
}
