package callback

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"strconv"
	"strings"

	"github.com/nightshift-jobs/nightshift/storage"
)

// Bounds of the webhook secrets setting.
const (
	// SecretPrefix starts every webhook secret: "whsec_" + standard base64 of the key
	// bytes (the Standard Webhooks secret form, which receivers' libraries take as is).
	SecretPrefix = "whsec_"
	// MinSecretBytes and MaxSecretBytes bound a secret's decoded key (the Standard
	// Webhooks recommendation: 24 to 64 random bytes).
	MinSecretBytes = 24
	MaxSecretBytes = 64
	// MaxSecretsPerOrigin bounds how many secrets sign for one origin (rotation needs 2).
	MaxSecretsPerOrigin = 4
)

// WebhookSecrets maps webhook destinations, by URL origin, to the secrets that sign what
// is sent there. The first secret of an origin is the current one; every secret of the
// origin signs each request (one "v1," signature each), so a receiver can move from one
// secret to the next without a gap. The zero value and nil have no secrets. Its String
// and LogValue never show a secret.
type WebhookSecrets struct {
	byOrigin map[string][]string
}

// ParseWebhookSecrets reads the NIGHTSHIFT_WEBHOOK_SECRETS setting: a JSON object whose
// keys are URL origins ("https://host[:port]", no path) and whose values are a secret or
// an array of secrets (first is current), each in the form "whsec_<base64 of 24–64
// bytes>". An empty setting has no secrets. Errors are *storage.SettingError naming the
// setting and the origin, never a secret.
func ParseWebhookSecrets(setting string) (*WebhookSecrets, error) {
	if strings.TrimSpace(setting) == "" {
		return &WebhookSecrets{}, nil
	}
	fail := func(format string, a ...any) error {
		return &storage.SettingError{Setting: SettingWebhookSecrets, Problem: fmt.Sprintf(format, a...)}
	}
	const want = `expected a JSON object {"https://receiver.example": "whsec_…"} (a secret or an array of secrets per origin)`
	dec := json.NewDecoder(strings.NewReader(setting))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return nil, fail("is not a JSON object; %s", want)
	}
	seen := map[string]bool{}
	raw := map[string][]string{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, fail("is not valid JSON; %s", want)
		}
		key, _ := tok.(string)
		if seen[key] {
			return nil, fail("names %s twice", quoteKey(key))
		}
		seen[key] = true
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return nil, fail("is not valid JSON; %s", want)
		}
		secrets, err := decodeSecretList(v)
		if err != nil {
			return nil, fail("%s: %s", quoteKey(key), err)
		}
		raw[key] = secrets
	}
	if _, err := dec.Token(); err != nil {
		return nil, fail("is not valid JSON; %s", want)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, fail("has content after the JSON object")
	}
	return newWebhookSecrets(raw)
}

// NewWebhookSecrets builds the secrets from a map of origin to secrets, checked as
// ParseWebhookSecrets checks the setting.
func NewWebhookSecrets(m map[string][]string) (*WebhookSecrets, error) {
	cp := make(map[string][]string, len(m))
	for k, v := range m {
		cp[k] = append([]string(nil), v...)
	}
	return newWebhookSecrets(cp)
}

func newWebhookSecrets(raw map[string][]string) (*WebhookSecrets, error) {
	w := &WebhookSecrets{byOrigin: make(map[string][]string, len(raw))}
	for key, secrets := range raw {
		origin, p := originKey(key)
		if p != "" {
			return nil, &storage.SettingError{Setting: SettingWebhookSecrets, Problem: fmt.Sprintf("key %s %s", quoteKey(key), p)}
		}
		if _, dup := w.byOrigin[origin]; dup {
			return nil, &storage.SettingError{Setting: SettingWebhookSecrets, Problem: fmt.Sprintf("names origin %s twice (keys are compared lower-case, default port elided)", origin)}
		}
		if p := checkSecretList(secrets); p != "" {
			return nil, &storage.SettingError{Setting: SettingWebhookSecrets, Problem: fmt.Sprintf("%s: %s", origin, p)}
		}
		w.byOrigin[origin] = secrets
	}
	return w, nil
}

// decodeSecretList reads a JSON string or array of strings.
func decodeSecretList(v json.RawMessage) ([]string, error) {
	v = bytes.TrimSpace(v)
	if len(v) > 0 && v[0] == '"' {
		var s string
		if err := json.Unmarshal(v, &s); err != nil {
			return nil, errors.New("the secret is not a JSON string")
		}
		return []string{s}, nil
	}
	if len(v) > 0 && v[0] == '[' {
		var list []string
		if err := json.Unmarshal(v, &list); err != nil {
			return nil, errors.New("the value must be a secret string or an array of secret strings")
		}
		return list, nil
	}
	return nil, errors.New("the value must be a secret string or an array of secret strings")
}

// checkSecretList says why secrets cannot sign for an origin ("" when they can). It never
// quotes a secret.
func checkSecretList(secrets []string) string {
	switch {
	case len(secrets) == 0:
		return "has no secret; give at least one"
	case len(secrets) > MaxSecretsPerOrigin:
		return fmt.Sprintf("has %d secrets; at most %d (the current one and those being rotated out)", len(secrets), MaxSecretsPerOrigin)
	}
	for i, s := range secrets {
		if p := checkSecret(s); p != "" {
			return fmt.Sprintf("secret %d %s", i+1, p)
		}
		for _, prev := range secrets[:i] {
			if prev == s {
				return fmt.Sprintf("secret %d repeats an earlier one", i+1)
			}
		}
	}
	return ""
}

// checkSecret says why s is not a usable webhook secret ("" when it is). It never quotes s.
func checkSecret(s string) string {
	if s == "" {
		return "is empty; webhooks are only signed with a non-empty secret"
	}
	rest, ok := strings.CutPrefix(s, SecretPrefix)
	if !ok {
		return fmt.Sprintf("is not in the form %s<base64> (generate one with: echo %s$(openssl rand -base64 32))", SecretPrefix, SecretPrefix)
	}
	key, err := base64.StdEncoding.DecodeString(rest)
	if err != nil {
		return fmt.Sprintf("is not %s followed by standard base64", SecretPrefix)
	}
	if len(key) < MinSecretBytes || len(key) > MaxSecretBytes {
		return fmt.Sprintf("decodes to %d bytes; give %d to %d random bytes", len(key), MinSecretBytes, MaxSecretBytes)
	}
	return ""
}

// originKey normalizes a setting key, which must be an origin and nothing more.
func originKey(key string) (string, string) {
	u, err := url.Parse(key)
	if err != nil {
		return "", "is not a URL origin (expected scheme://host[:port])"
	}
	origin, p := originOf(u)
	if p != "" {
		return "", p
	}
	if u.Path != "" && u.Path != "/" || u.RawQuery != "" || u.ForceQuery || u.Fragment != "" || strings.Contains(key, "#") {
		return "", "has a path, query or fragment; give the origin only (scheme://host[:port])"
	}
	return origin, ""
}

// Origin returns the normalized origin of a webhook URL: lower-case scheme and host,
// default port (443 for https, 80 for http) elided, e.g. "https://hooks.example:8443".
func Origin(rawURL string) (string, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return "", errors.New("callback: not an absolute URL")
	}
	origin, p := originOf(u)
	if p != "" {
		return "", fmt.Errorf("callback: URL %s", p)
	}
	return origin, nil
}

func originOf(u *url.URL) (string, string) {
	scheme := strings.ToLower(u.Scheme)
	if scheme != "https" && scheme != "http" {
		return "", "is not an http(s) origin (expected scheme://host[:port])"
	}
	if u.User != nil {
		return "", "carries user information; give scheme://host[:port]"
	}
	if u.Opaque != "" {
		return "", "is not an http(s) origin (expected scheme://host[:port])"
	}
	host := strings.ToLower(u.Hostname())
	if host == "" || strings.ContainsAny(host, "%/\\ ") {
		return "", "has no usable host (expected scheme://host[:port])"
	}
	if strings.Contains(host, ":") {
		host = "[" + host + "]"
	}
	port := u.Port()
	if port == "" {
		if strings.HasSuffix(u.Host, ":") {
			return "", "has an empty port"
		}
		return scheme + "://" + host, ""
	}
	n, err := strconv.Atoi(port)
	if err != nil || n < 1 || n > 65535 {
		return "", "has a port outside 1–65535"
	}
	if scheme == "https" && n == 443 || scheme == "http" && n == 80 {
		return scheme + "://" + host, ""
	}
	return scheme + "://" + host + ":" + strconv.Itoa(n), ""
}

// quoteKey quotes a setting key for an error, bounded (keys are origins, not secrets).
func quoteKey(key string) string {
	if len(key) > 80 {
		key = key[:80] + "…"
	}
	return strconv.Quote(key)
}

// For returns the secrets that sign webhooks to rawURL's origin (current first), or an
// error if the origin has none.
func (w *WebhookSecrets) For(rawURL string) ([]string, error) {
	origin, err := Origin(rawURL)
	if err != nil {
		return nil, err
	}
	var secrets []string
	if w != nil {
		secrets = w.byOrigin[origin]
	}
	if len(secrets) == 0 {
		return nil, fmt.Errorf("callback: no webhook secret is configured for origin %s (%s); webhooks are only sent signed", origin, SettingWebhookSecrets)
	}
	return append([]string(nil), secrets...), nil
}

// Len is the number of origins with secrets.
func (w *WebhookSecrets) Len() int {
	if w == nil {
		return 0
	}
	return len(w.byOrigin)
}

// String shows how many origins have secrets, never the origins' secrets.
func (w *WebhookSecrets) String() string {
	return fmt.Sprintf("WebhookSecrets(%d origins)", w.Len())
}

// LogValue implements slog.LogValuer without the secrets.
func (w *WebhookSecrets) LogValue() slog.Value {
	return slog.IntValue(w.Len())
}
