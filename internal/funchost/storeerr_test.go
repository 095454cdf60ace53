package funchost

import (
	"errors"
	"fmt"
	"testing"

	"github.com/nightshift-jobs/nightshift/internal/store"
)

// TestQueue_2_2_StorageErrorClasses: the listener backs off on "not found", "being
// deleted/disabled" (conflict) and unavailable (5xx, no answer) and stops the host on any
// other error such as 403 (§2.2); delete and update ignore pop receipt mismatch, 404 and
// 409 (§2.3, §2.5), which the drivers map onto ErrInvalid/ErrNotFound and ErrConflict.
func TestQueue_2_2_StorageErrorClasses(t *testing.T) {
	wrapped := func(kind error) error { return fmt.Errorf("receive from jobs: %w: %w", kind, errors.New("sdk error")) }
	for _, tc := range []struct {
		name            string
		err             error
		backOff, ignore bool
	}{
		{"not found", wrapped(store.ErrNotFound), true, true},
		{"conflict", wrapped(store.ErrConflict), true, true},
		{"unavailable", wrapped(store.ErrUnavailable), true, false},
		{"invalid", wrapped(store.ErrInvalid), false, true},
		{"403", errors.New("403 AuthorizationPermissionMismatch"), false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := backsOff(tc.err); got != tc.backOff {
				t.Errorf("backsOff = %v, want %v", got, tc.backOff)
			}
			if got := isGone(tc.err); got != tc.ignore {
				t.Errorf("isGone = %v, want %v", got, tc.ignore)
			}
		})
	}
}
