package callback

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"
)

// Header names of a webhook request (Standard Webhooks, https://www.standardwebhooks.com).
const (
	// HeaderWebhookID is the delivery's id: the id of the delivery job, derived from the
	// job id, its life (replay) and the event, so it is the same on every retry of one
	// delivery and receivers can drop duplicates by it.
	HeaderWebhookID = standardwebhooks.HeaderWebhookID
	// HeaderWebhookTimestamp is when this attempt was signed, in unix seconds.
	HeaderWebhookTimestamp = standardwebhooks.HeaderWebhookTimestamp
	// HeaderWebhookSignature is one "v1,<base64 HMAC-SHA256>" per secret of the
	// destination, space-separated; each signs "<id>.<timestamp>.<body>".
	HeaderWebhookSignature = standardwebhooks.HeaderWebhookSignature
	// HeaderEvent repeats the body's event ("job.succeeded", "job.dead") for routing. It
	// is not signed: act on the verified body's event.
	HeaderEvent = "X-Nightshift-Event"
)

// newSigner checks one secret and returns the library's signer for it. The library
// itself would take an empty or malformed key, so this check comes first.
func newSigner(i int, secret string) (*standardwebhooks.Webhook, error) {
	if p := checkSecret(secret); p != "" {
		return nil, fmt.Errorf("callback: secret %d %s", i+1, p)
	}
	wh, err := standardwebhooks.NewWebhook(secret)
	if err != nil {
		return nil, fmt.Errorf("callback: secret %d is not %s followed by standard base64", i+1, SecretPrefix)
	}
	return wh, nil
}

// Sign returns the webhook-signature header value for a message id, timestamp and body:
// one "v1,<base64 HMAC-SHA256(key, "<id>.<unix seconds>.<body>")>" per secret, in the
// order given, space-separated. Secrets are in the form "whsec_<base64>"; an empty list,
// an empty or malformed secret or an empty id is an error.
func Sign(secrets []string, id string, timestamp time.Time, body []byte) (string, error) {
	if len(secrets) == 0 {
		return "", errors.New("callback: no secret to sign with")
	}
	if id == "" {
		return "", errors.New("callback: empty webhook id")
	}
	sigs := make([]string, 0, len(secrets))
	for i, s := range secrets {
		wh, err := newSigner(i, s)
		if err != nil {
			return "", err
		}
		sig, err := wh.Sign(id, timestamp, body)
		if err != nil {
			return "", fmt.Errorf("callback: sign: %w", err)
		}
		sigs = append(sigs, sig)
	}
	return strings.Join(sigs, " "), nil
}

// Verify checks a webhook as a receiver does: the webhook-id, webhook-timestamp and
// webhook-signature headers against the raw body. It succeeds when any "v1," signature
// in the header matches any of secrets (several secrets: a receiver rotating its secret
// accepts both meanwhile), and the timestamp is within tolerance of now either way
// (replay protection; 5 minutes is usual). An empty secret list, an empty or malformed
// secret, or a tolerance that is not positive is an error, never a pass.
func Verify(secrets []string, header http.Header, body []byte, now time.Time, tolerance time.Duration) error {
	if len(secrets) == 0 {
		return errors.New("callback: no secret to verify with")
	}
	if tolerance <= 0 {
		return fmt.Errorf("callback: tolerance %s is not positive", tolerance)
	}
	signers := make([]*standardwebhooks.Webhook, 0, len(secrets))
	for i, s := range secrets {
		wh, err := newSigner(i, s)
		if err != nil {
			return err
		}
		signers = append(signers, wh)
	}
	if header.Get(HeaderWebhookID) == "" || header.Get(HeaderWebhookSignature) == "" {
		return fmt.Errorf("callback: %s or %s header missing", HeaderWebhookID, HeaderWebhookSignature)
	}
	raw := header.Get(HeaderWebhookTimestamp)
	ts, err := strconv.ParseInt(raw, 10, 64)
	if err != nil {
		return fmt.Errorf("callback: %s %q is not unix seconds", HeaderWebhookTimestamp, truncate(raw, 32))
	}
	switch d := now.Sub(time.Unix(ts, 0)); {
	case d > tolerance:
		return fmt.Errorf("callback: timestamp is %s old; at most %s allowed", d.Round(time.Second), tolerance)
	case d < -tolerance:
		return fmt.Errorf("callback: timestamp is %s in the future; at most %s allowed", (-d).Round(time.Second), tolerance)
	}
	// The library's own time check uses time.Now and a fixed 5 minutes; the timestamp
	// was checked above against the caller's clock and tolerance instead.
	for _, wh := range signers {
		if wh.VerifyIgnoringTimestamp(body, header) == nil {
			return nil
		}
	}
	return errors.New("callback: no signature matches the body (wrong secret, or the body, id or timestamp was changed)")
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}
