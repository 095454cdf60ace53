package seal

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
)

// fakeVault speaks the Key Vault wrapkey/unwrapkey REST shape with real RSA keys, behind
// the challenge authentication the SDK performs (401 with WWW-Authenticate first).
type fakeVault struct {
	t        *testing.T
	srv      *httptest.Server
	mu       sync.Mutex
	versions []string // newest last
	keys     map[string]*rsa.PrivateKey
	calls    map[string]int
}

func newFakeVault(t *testing.T) *fakeVault {
	v := &fakeVault{t: t, keys: map[string]*rsa.PrivateKey{}, calls: map[string]int{}}
	v.rotate()
	v.srv = httptest.NewTLSServer(http.HandlerFunc(v.serve))
	t.Cleanup(v.srv.Close)
	return v
}

func (v *fakeVault) rotate() string {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		v.t.Fatal(err)
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	ver := strings.Repeat(string(rune('a'+len(v.versions))), 32)
	v.versions = append(v.versions, ver)
	v.keys[ver] = k
	return ver
}

func (v *fakeVault) serve(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get("Authorization") != "Bearer test-token" {
		w.Header().Set("WWW-Authenticate", `Bearer authorization="https://login.microsoftonline.com/tenant", resource="https://vault.azure.net"`)
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	if r.Method != http.MethodPost || r.URL.Query().Get("api-version") == "" {
		http.Error(w, "bad request", http.StatusBadRequest)
		return
	}
	var parts []string
	for _, p := range strings.Split(r.URL.Path, "/") {
		if p != "" {
			parts = append(parts, p)
		}
	}
	if len(parts) < 3 || parts[0] != "keys" || parts[1] != "kek" {
		http.Error(w, `{"error":{"code":"KeyNotFound"}}`, http.StatusNotFound)
		return
	}
	op := parts[len(parts)-1]
	v.mu.Lock()
	ver := v.versions[len(v.versions)-1]
	if len(parts) == 4 {
		ver = parts[2]
	}
	k := v.keys[ver]
	v.calls[op]++
	v.mu.Unlock()
	var body struct {
		Alg   string `json:"alg"`
		Value string `json:"value"`
	}
	if err := json.NewDecoder(r.Body).Decode(&body); err != nil || body.Alg != "RSA-OAEP-256" || k == nil {
		w.WriteHeader(http.StatusBadRequest)
		_, _ = w.Write([]byte(`{"error":{"code":"BadParameter","message":"bad request"}}`))
		return
	}
	in, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(body.Value, "="))
	if err != nil {
		http.Error(w, "bad value", http.StatusBadRequest)
		return
	}
	var out []byte
	switch op {
	case "wrapkey":
		out, err = rsa.EncryptOAEP(sha256.New(), rand.Reader, &k.PublicKey, in, nil)
	case "unwrapkey":
		out, err = rsa.DecryptOAEP(sha256.New(), nil, k, in, nil)
	default:
		err = errors.New("unknown operation")
	}
	if err != nil {
		w.WriteHeader(http.StatusBadRequest)
		_, _ = w.Write([]byte(`{"error":{"code":"BadParameter","message":"` + op + ` failed"}}`))
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]string{
		"kid":   v.srv.URL + "/keys/kek/" + ver,
		"value": base64.RawURLEncoding.EncodeToString(out),
	})
}

type fakeCred struct{}

func (fakeCred) GetToken(context.Context, policy.TokenRequestOptions) (azcore.AccessToken, error) {
	return azcore.AccessToken{Token: "test-token", ExpiresOn: time.Now().Add(time.Hour)}, nil
}

func (v *fakeVault) sealer(t *testing.T, keyURL string) *Sealer {
	t.Helper()
	opts := &KeyVaultOptions{}
	opts.Transport = v.srv.Client()
	opts.DisableChallengeResourceVerification = true
	s, err := FromEnv(func(k string) string {
		if k == SettingKeyURL {
			return keyURL
		}
		return ""
	}, &EnvOptions{Credential: func() (azcore.TokenCredential, error) { return fakeCred{}, nil }, KeyVault: opts})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// The Key Vault KEK wraps with the key's current version, records the versioned kid, and
// unwraps old values with their version after the key is rotated.
func TestKeyVaultWrapUnwrapAndRotation(t *testing.T) {
	ctx := context.Background()
	v := newFakeVault(t)
	s := v.sealer(t, v.srv.URL+"/keys/kek")
	old, err := s.Seal(ctx, []byte("MARKER"), []byte("aad"))
	if err != nil {
		t.Fatal(err)
	}
	kid1, _ := KeyID(old)
	if kid1 != v.srv.URL+"/keys/kek/"+v.versions[0] {
		t.Fatalf("kid = %q, want the versioned key id", kid1)
	}
	v.rotate()
	// A new process (no cached DEK) wraps with the new version and opens the old value.
	s2 := v.sealer(t, v.srv.URL+"/keys/kek")
	fresh, err := s2.Seal(ctx, []byte("new"), []byte("aad"))
	if err != nil {
		t.Fatal(err)
	}
	if kid2, _ := KeyID(fresh); kid2 != v.srv.URL+"/keys/kek/"+v.versions[1] {
		t.Fatalf("after rotation kid = %q, want version %s", kid2, v.versions[1])
	}
	for range 3 {
		got, err := s2.Open(ctx, old, []byte("aad"))
		if err != nil || string(got) != "MARKER" {
			t.Fatalf("Open(old) after rotation = %q, %v", got, err)
		}
	}
	if n := v.calls["unwrapkey"]; n != 1 {
		t.Fatalf("3 opens called unwrapkey %d times, want 1 (cached)", n)
	}
	// A header naming another key or vault is refused without calling the vault.
	other := v.sealer(t, v.srv.URL+"/keys/other")
	if _, err := other.Open(ctx, old, []byte("aad")); !errors.Is(err, ErrUnknownKey) {
		t.Fatalf("Open with another key configured = %v, want ErrUnknownKey", err)
	}
}
