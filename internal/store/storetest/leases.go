package storetest

import (
	"testing"
	"time"

	"github.com/nightshift-jobs/nightshift/internal/store"
)

func leaseCases() []testCase {
	return []testCase{
		{"Lease/ExcludesOtherWriters", leaseExcludes},
		{"Lease/MissingBlobAndBadDuration", leaseInvalid},
		{"Lease/ExpiresAndRenews", leaseExpiry},
	}
}

func leasedBlob(t *testing.T, h Harness) (string, string) {
	t.Helper()
	c := newContainer(t, h)
	_, err := h.Store.Put(ctx(t), c, "lock", nil, store.PutOptions{})
	is(t, "Put", err, nil)
	id, err := h.Store.AcquireLease(ctx(t), c, "lock", store.MinLease)
	is(t, "AcquireLease", err, nil)
	if id == "" {
		t.Fatal("AcquireLease returned no lease id")
	}
	return c, id
}

func leaseExcludes(t *testing.T, h Harness) {
	c, id := leasedBlob(t, h)
	_, err := h.Store.AcquireLease(ctx(t), c, "lock", store.MinLease)
	is(t, "second AcquireLease", err, store.ErrConflict)
	_, err = h.Store.Put(ctx(t), c, "lock", []byte("x"), store.PutOptions{})
	is(t, "Put without the lease", err, store.ErrConflict)
	is(t, "Delete without the lease", h.Store.Delete(ctx(t), c, "lock", store.DeleteOptions{}), store.ErrConflict)
	_, err = h.Store.Put(ctx(t), c, "lock", []byte("y"), store.PutOptions{LeaseID: id})
	is(t, "Put with the lease", err, nil)
	_, err = h.Store.AcquireLease(ctx(t), c, "lock", store.MinLease)
	is(t, "AcquireLease after a write under the lease", err, store.ErrConflict)
	is(t, "ReleaseLease with another id", h.Store.ReleaseLease(ctx(t), c, "lock", "6c1c2b5e-0000-4000-8000-000000000000"), store.ErrConflict)
	is(t, "ReleaseLease", h.Store.ReleaseLease(ctx(t), c, "lock", id), nil)
	id2, err := h.Store.AcquireLease(ctx(t), c, "lock", -1)
	is(t, "AcquireLease after release", err, nil)
	is(t, "RenewLease of the released lease", h.Store.RenewLease(ctx(t), c, "lock", id), store.ErrConflict)
	is(t, "Delete with the lease", h.Store.Delete(ctx(t), c, "lock", store.DeleteOptions{LeaseID: id2}), nil)
}

func leaseInvalid(t *testing.T, h Harness) {
	c := newContainer(t, h)
	_, err := h.Store.AcquireLease(ctx(t), c, "nope", store.MinLease)
	is(t, "AcquireLease of a missing blob", err, store.ErrNotFound)
	_, err = h.Store.Put(ctx(t), c, "b", nil, store.PutOptions{})
	is(t, "Put", err, nil)
	for _, d := range []time.Duration{0, 14 * time.Second, 61 * time.Second} {
		_, err = h.Store.AcquireLease(ctx(t), c, "b", d)
		is(t, "AcquireLease for "+d.String(), err, store.ErrInvalid)
	}
}

func leaseExpiry(t *testing.T, h Harness) {
	c, id := leasedBlob(t, h)
	h.Sleep(store.MinLease / 2)
	is(t, "RenewLease", h.Store.RenewLease(ctx(t), c, "lock", id), nil)
	h.Sleep(store.MinLease/2 + 2*time.Second)
	_, err := h.Store.AcquireLease(ctx(t), c, "lock", store.MinLease)
	is(t, "AcquireLease before the renewed lease ran out", err, store.ErrConflict)
	h.Sleep(store.MinLease)
	other, err := h.Store.AcquireLease(ctx(t), c, "lock", store.MinLease)
	is(t, "AcquireLease after expiry", err, nil)
	is(t, "RenewLease of the expired, retaken lease", h.Store.RenewLease(ctx(t), c, "lock", id), store.ErrConflict)
	is(t, "ReleaseLease", h.Store.ReleaseLease(ctx(t), c, "lock", other), nil)
}
