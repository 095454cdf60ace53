package nightshift

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/nightshift-jobs/nightshift/envelope"
	"github.com/nightshift-jobs/nightshift/storage"
)

// SettingMaxPayloadBytes is the app setting bounding a job's args: larger args are
// refused at enqueue (default DefaultMaxPayloadBytes).
const SettingMaxPayloadBytes = "NIGHTSHIFT_MAX_PAYLOAD_BYTES"

// DefaultMaxPayloadBytes is the default bound on a job's args: 64 MiB.
const DefaultMaxPayloadBytes = 64 << 20

// ClaimCheckThreshold is the args size above which the client stores the args in Blob
// (container nightshift-payloads) and the envelope carries only a reference (args_ref,
// with the sha256 of the bytes). Below it the args travel in the queue message, whose
// limit is 64 KiB for the whole envelope (functions-host-contract.md §2.7); the margin
// leaves room for the failure history a retried envelope carries.
const ClaimCheckThreshold = 48 * 1024

// ErrPayloadTooLarge is returned (wrapped in a *PayloadTooLargeError) when a job's args
// exceed the configured maximum.
var ErrPayloadTooLarge = errors.New("job payload too large")

// PayloadTooLargeError reports args over the configured maximum.
type PayloadTooLargeError struct {
	Kind       string
	Size, Max  int64
	SettingMax string
}

func (e *PayloadTooLargeError) Error() string {
	return fmt.Sprintf("args of %s are %d bytes; the maximum is %d bytes (setting %s) — store the data in Blob yourself and pass its name",
		e.Kind, e.Size, e.Max, e.SettingMax)
}

// Unwrap makes errors.Is(err, ErrPayloadTooLarge) true.
func (e *PayloadTooLargeError) Unwrap() error { return ErrPayloadTooLarge }

// MaxPayloadBytesFromEnv reads SettingMaxPayloadBytes (DefaultMaxPayloadBytes when unset).
func MaxPayloadBytesFromEnv(getenv func(string) string) (int64, error) {
	v := strings.TrimSpace(getenv(SettingMaxPayloadBytes))
	if v == "" {
		return DefaultMaxPayloadBytes, nil
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 1 {
		return 0, &storage.SettingError{Setting: SettingMaxPayloadBytes, Problem: fmt.Sprintf("%q is not a positive number of bytes", v)}
	}
	return n, nil
}

// claimCheck enforces the payload maximum and moves args above ClaimCheckThreshold to the
// payloads container, leaving args_ref in the envelope. max <= 0 means the default.
func claimCheck(ctx context.Context, store *storage.Clients, env *envelope.Envelope, max int64) error {
	if max <= 0 {
		max = DefaultMaxPayloadBytes
	}
	size := int64(len(env.Args))
	if size > max {
		return &PayloadTooLargeError{Kind: env.Kind, Size: size, Max: max, SettingMax: SettingMaxPayloadBytes}
	}
	if size <= ClaimCheckThreshold {
		return nil
	}
	sum := sha256.Sum256(env.Args)
	name := storage.ArgsPayloadBlob(env.JobID)
	if err := store.PutPayload(ctx, name, "application/json", env.Args); err != nil {
		return fmt.Errorf("claim check for job %s: %w", env.JobID, err)
	}
	env.ArgsRef = &envelope.BlobRef{Container: store.Layout.PayloadsContainer(), Blob: name, Size: size, SHA256: hex.EncodeToString(sum[:])}
	env.Args = nil
	return nil
}

// loadArgs fetches claim-checked args and checks their size and sha256. A missing or
// altered payload is a permanent error: retrying cannot bring it back.
func (x *executor) loadArgs(ctx context.Context, ref *envelope.BlobRef) (json.RawMessage, error) {
	data, err := x.ext.GetPayload(ctx, ref.Container, ref.Blob)
	if err != nil {
		if errors.Is(err, storage.ErrNotFound) {
			return nil, Permanentf("claim-checked args %s/%s are missing", ref.Container, ref.Blob)
		}
		return nil, err
	}
	if ref.Size > 0 && int64(len(data)) != ref.Size {
		return nil, Permanentf("claim-checked args %s/%s are %d bytes; args_ref says %d", ref.Container, ref.Blob, len(data), ref.Size)
	}
	if ref.SHA256 != "" {
		sum := sha256.Sum256(data)
		if got := hex.EncodeToString(sum[:]); !strings.EqualFold(got, ref.SHA256) {
			return nil, Permanentf("claim-checked args %s/%s have sha256 %s; args_ref says %s", ref.Container, ref.Blob, got, ref.SHA256)
		}
	}
	return data, nil
}
