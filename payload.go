package nightshift

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/nightshift-jobs/nightshift/envelope"
	"github.com/nightshift-jobs/nightshift/record"
	"github.com/nightshift-jobs/nightshift/seal"
	"github.com/nightshift-jobs/nightshift/storage"
)

// SettingMaxPayloadBytes is the app setting bounding a job's args: larger args are
// refused at enqueue (default DefaultMaxPayloadBytes).
const SettingMaxPayloadBytes = storage.SettingMaxPayloadBytes

// DefaultMaxPayloadBytes is the default bound on a job's args: 64 MiB.
const DefaultMaxPayloadBytes = 64 << 20

// ClaimCheckThreshold is the args size above which the client stores the args in Blob
// (container nightshift-payloads) and the envelope carries only a reference (args_ref,
// with the sha256 of the bytes). Below it the args travel in the queue message, whose
// limit is 64 KiB for the whole envelope (docs/host-contract.md §2.7); the margin
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
	n, err := storage.MaxPayloadFromEnv(getenv)
	if err != nil || n > 0 {
		return n, err
	}
	return DefaultMaxPayloadBytes, nil
}

// claimCheck enforces the payload maximum and moves args above ClaimCheckThreshold to the
// payloads container, leaving args_ref in the envelope. max <= 0 means the default. With
// an encryption key (store.Sealer) the args are sealed: into args_sealed when the sealed
// args fit the threshold (as base64), else into the payload blob, which storage seals.
func claimCheck(ctx context.Context, store *storage.Clients, env *envelope.Envelope, max int64) error {
	if max <= 0 {
		max = DefaultMaxPayloadBytes
	}
	size := int64(len(env.Args))
	if size > max {
		return &PayloadTooLargeError{Kind: env.Kind, Size: size, Max: max, SettingMax: SettingMaxPayloadBytes}
	}
	if store.Sealer != nil && size > 0 && size <= ClaimCheckThreshold {
		sealed, err := store.Sealer.Seal(ctx, env.Args, storage.ArgsAAD(env.JobID))
		if err != nil {
			return fmt.Errorf("encrypt args of job %s: %w", env.JobID, err)
		}
		if base64.StdEncoding.EncodedLen(len(sealed)) <= ClaimCheckThreshold {
			env.ArgsSealed, env.Args = sealed, nil
			return nil
		}
	} else if size <= ClaimCheckThreshold {
		return nil
	}
	ref, err := putArgsPayload(ctx, store, env.JobID, env.Args)
	if err != nil {
		return fmt.Errorf("claim check for job %s: %w", env.JobID, err)
	}
	env.ArgsRef, env.Args = ref, nil
	return nil
}

// putArgsPayload writes args to the job's own payload blob and returns the reference to
// it (with size and sha256, as loadArgs requires).
func putArgsPayload(ctx context.Context, store *storage.Clients, jobID string, args []byte) (*envelope.BlobRef, error) {
	sum := sha256.Sum256(args)
	name := storage.ArgsPayloadBlob(jobID)
	if err := store.PutPayload(ctx, name, "application/json", args); err != nil {
		return nil, err
	}
	return &envelope.BlobRef{Container: store.Layout.PayloadsContainer(), Blob: name, Size: int64(len(args)), SHA256: hex.EncodeToString(sum[:])}, nil
}

// shownArgs are env's args as its status record shows them (record.Status.Args): the
// sensitive fields of its kind redacted; nil for sealed or claim-checked args, args that
// are not JSON, and kinds the registry does not know.
func (x *executor) shownArgs(env *envelope.Envelope) json.RawMessage {
	e := x.reg.lookup(env.Kind)
	if e == nil || len(env.Args) == 0 || len(env.ArgsSealed) > 0 || env.ArgsRef != nil || len(env.Args) > record.MaxShownArgs {
		return nil
	}
	if len(e.sensitive) == 0 {
		if !json.Valid(env.Args) {
			return nil
		}
		return env.Args
	}
	red, _, err := redactJSON(env.Args, e.sensitive)
	if err != nil {
		return nil
	}
	return red
}

// redactDeadArgs keeps a dead job's sensitive args out of its dead-letter record: the
// record's envelope shows them redacted, and the original args go to the job's own
// payload blob, which the record references (ArgsRef) so that a replay runs with them.
// Claim-checked args are in that blob already and shown nowhere.
func (x *executor) redactDeadArgs(ctx context.Context, dl *record.DeadLetter, env *envelope.Envelope) error {
	e := x.reg.lookup(env.Kind)
	if e == nil || len(e.sensitive) == 0 {
		return nil
	}
	args := env.Args
	if len(env.ArgsSealed) > 0 { // the CLI would open them: redact what it would show
		opened, err := x.openArgs(ctx, env)
		if err != nil {
			return nil // they stay sealed; nothing opens them without the key
		}
		args = opened
	}
	if len(args) == 0 {
		return nil
	}
	red, changed, err := redactJSON(args, e.sensitive)
	if err != nil { // args that are not JSON cannot be redacted in part: show none
		red, changed = json.RawMessage(`"`+Redacted+`"`), true
	}
	if !changed {
		return nil
	}
	ref, err := putArgsPayload(ctx, x.ext, env.JobID, args)
	if err != nil {
		return fmt.Errorf("keep the sensitive args of dead job %s: %w", env.JobID, err)
	}
	shown := *env
	shown.Args, shown.ArgsSealed = red, nil
	dl.Envelope, dl.ArgsRef = &shown, ref
	return nil
}

// loadArgs fetches claim-checked args. The reference is confined: it must name exactly
// the job's own payload blob in the layout's payloads container, with the size and sha256
// of its bytes, and the size must be within the payload maximum; the download reads at
// most that much. Anything else is a permanent error (nothing is read, nothing deleted):
// a queue sender must not make a job read another blob. A missing or altered payload is
// permanent too: retrying cannot bring it back.
func (x *executor) loadArgs(ctx context.Context, env *envelope.Envelope) (json.RawMessage, error) {
	ref := env.ArgsRef
	if why := x.argsRefProblem(env); why != "" {
		return nil, Permanentf("args_ref refused: %s", why)
	}
	data, err := x.ext.GetPayload(ctx, ref.Blob, ref.Size)
	if err != nil {
		if errors.Is(err, storage.ErrNotFound) {
			return nil, Permanentf("claim-checked args %s/%s are missing", ref.Container, ref.Blob)
		}
		if errors.Is(err, storage.ErrTooLarge) {
			return nil, Permanentf("claim-checked args %s/%s are larger than args_ref's size %d: %v", ref.Container, ref.Blob, ref.Size, err)
		}
		return nil, err
	}
	if int64(len(data)) != ref.Size {
		return nil, Permanentf("claim-checked args %s/%s are %d bytes; args_ref says %d", ref.Container, ref.Blob, len(data), ref.Size)
	}
	sum := sha256.Sum256(data)
	if got := hex.EncodeToString(sum[:]); !strings.EqualFold(got, ref.SHA256) {
		return nil, Permanentf("claim-checked args %s/%s have sha256 %s; args_ref says %s", ref.Container, ref.Blob, got, ref.SHA256)
	}
	// Held to the same rules as inline args, which Decode checked with the envelope.
	if err := envelope.CheckJSON(data); err != nil {
		return nil, Permanent(envelope.PrefixPath("args", err))
	}
	return data, nil
}

// openArgs decrypts args_sealed. No key configured, a value that is not sealed, or one
// that does not open (another job's args, altered, a key removed) is a permanent error;
// a Key Vault that cannot be reached is not.
func (x *executor) openArgs(ctx context.Context, env *envelope.Envelope) (json.RawMessage, error) {
	if x.ext == nil || x.ext.Sealer == nil {
		return nil, Permanentf("%v", storage.NoKeyError("args_sealed"))
	}
	if !seal.IsSealed(env.ArgsSealed) {
		return nil, Permanentf("args_sealed is not a value nightshift sealed (see docs/encryption.md)")
	}
	data, err := x.ext.Sealer.Open(ctx, env.ArgsSealed, storage.ArgsAAD(env.JobID))
	if err != nil {
		if seal.IsPermanent(err) {
			return nil, Permanentf("args_sealed does not open: %v", err)
		}
		return nil, err
	}
	if !json.Valid(data) {
		return nil, Permanentf("args_sealed opens to bytes that are not JSON")
	}
	return data, nil
}

// argsRefProblem says why a job's args_ref may not be followed ("" when it may).
func (x *executor) argsRefProblem(env *envelope.Envelope) string {
	ref := env.ArgsRef
	container, name := x.ext.Layout.PayloadsContainer(), storage.ArgsPayloadBlob(env.JobID)
	switch {
	case ref.Container != container || ref.Blob != name:
		return fmt.Sprintf("it must name this job's own payload, %s/%s (the claim check writes it there)", container, name)
	case ref.Size <= 0:
		return "it needs the size of the payload in bytes"
	case ref.Size > x.maxPayload:
		return fmt.Sprintf("size %d is over the maximum payload of %d bytes (setting %s)", ref.Size, x.maxPayload, SettingMaxPayloadBytes)
	case len(ref.SHA256) != sha256.Size*2:
		return "it needs the sha256 of the payload, as 64 hex digits"
	}
	return ""
}

// payloads is the hook set of claim-checked and sealed args. At admission it resolves the
// args: it loads claim-checked ones (loadArgs) and opens sealed ones (openArgs); a
// permanent problem fails the attempt without running it (attempt.argsErr), a storage
// error fails the invocation. When the attempt that succeeded records its end, the job's
// claim-checked args are deleted (a failure is logged); a dead job keeps them for replay.
type payloads struct{ x *executor }

func (p payloads) admit(ctx context.Context, a *attempt) (outcome, bool) {
	env := a.env
	var err error
	switch {
	case env.ArgsRef != nil:
		a.args, err = p.x.loadArgs(ctx, env)
	case len(env.ArgsSealed) > 0:
		a.args, err = p.x.openArgs(ctx, env)
	}
	if err != nil && !IsPermanent(err) {
		return infraFailure(err), false
	}
	a.argsErr = err
	return outcome{}, true
}

func (p payloads) ended(ctx context.Context, e jobEnd) error {
	env := e.env
	if env.ArgsRef == nil || e.state != record.StateSucceeded || e.via != endAttempt {
		return nil
	}
	// Only the job's own payload: loadArgs refused to run on any other reference.
	if err := p.x.ext.DeletePayload(ctx, storage.ArgsPayloadBlob(env.JobID)); err != nil {
		p.x.log.Warn("could not delete claim-checked args", "job_id", env.JobID, "error", err.Error())
	}
	return nil
}
