package httpapi_test

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"

	"github.com/nightshift-jobs/nightshift"
	"github.com/nightshift-jobs/nightshift/httpapi"
	"github.com/nightshift-jobs/nightshift/internal/testenv"
	"github.com/nightshift-jobs/nightshift/record"
	"github.com/nightshift-jobs/nightshift/storage"
)

// fakeToken is a token credential for Azurite's "--oauth basic" mode, which checks a
// bearer token's audience, issuer and lifetime but not its signature.
type fakeToken struct{}

func (fakeToken) GetToken(ctx context.Context, _ policy.TokenRequestOptions) (azcore.AccessToken, error) {
	enc := func(v any) string { b, _ := json.Marshal(v); return base64.RawURLEncoding.EncodeToString(b) }
	now := time.Now()
	claims := map[string]any{
		"aud": "https://storage.azure.com", "iss": "https://sts.windows.net/ab1f708d-50f6-404c-a006-d71b2ac7a606/",
		"iat": now.Add(-time.Minute).Unix(), "nbf": now.Add(-time.Minute).Unix(), "exp": now.Add(time.Hour).Unix(),
		"oid": "0b8f7d8e-3f1e-4c39-9a47-8a0f3c5e2b11", "tid": "ab1f708d-50f6-404c-a006-d71b2ac7a606",
	}
	tok := enc(map[string]string{"alg": "RS256", "typ": "JWT"}) + "." + enc(claims) + ".c2lnbmF0dXJl"
	return azcore.AccessToken{Token: tok, ExpiresOn: now.Add(time.Hour)}, nil
}

// TestResultLinkWithUserDelegation checks the identity-based path: with a token
// credential (no account key), the result link is a user delegation SAS, which a plain
// GET can follow. It runs its own Azurite with HTTPS and OAuth, addressed with a
// production-style host name (<account>.blob.localhost) as on Azure, because the SDK takes
// the account name for the delegation key from the host.
func TestResultLinkWithUserDelegation(t *testing.T) {
	if _, err := os.Stat(testenv.AzuriteBinary()); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("azurite not installed: %v", err)
		}
		t.Skipf("azurite not installed: %v", err)
	}
	dir := t.TempDir()
	certPEM, keyPEM := selfSigned(t, "devstoreaccount1.blob.localhost")
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, certPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, keyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	port := freePort(t)
	bin := filepath.Join(filepath.Dir(testenv.AzuriteBinary()), "azurite-blob")
	cmd := exec.Command(bin, "--inMemoryPersistence", "--extentMemoryLimit", "64", "--blobHost", "127.0.0.1", "--blobPort", fmt.Sprint(port),
		"--skipApiVersionCheck", "--disableTelemetry", "--oauth", "basic", "--cert", certFile, "--key", keyFile)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	ready := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if strings.Contains(sc.Text(), "successfully listens") {
				close(ready)
			}
		}
	}()
	select {
	case <-ready:
	case <-time.After(30 * time.Second):
		t.Fatal("azurite (https, oauth) did not start")
	}

	// Every host name goes to this Azurite, over TLS trusting its certificate.
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(certPEM)
	tr := &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: roots},
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, network, fmt.Sprintf("127.0.0.1:%d", port))
		},
	}
	hc := &http.Client{Transport: tr, Timeout: 30 * time.Second}
	endpoint := fmt.Sprintf("https://devstoreaccount1.blob.localhost:%d/", port)
	settings := map[string]string{
		storage.SettingBlobServiceURI:  endpoint,
		storage.SettingQueueServiceURI: fmt.Sprintf("https://devstoreaccount1.queue.localhost:%d/", port),
		storage.SettingNamePrefix:      testenv.Prefix(t),
	}
	store, err := storage.FromEnv(func(k string) string { return settings[k] }, &storage.Options{Transport: hc, Credential: fakeToken{}})
	if err != nil {
		t.Fatal(err)
	}
	if testenv.SignsWith(store) != "user-delegation" || store.AccountName != "devstoreaccount1" {
		t.Fatalf("clients: signing %q, account %q; want an identity-based connection (user delegation)", testenv.SignsWith(store), store.AccountName)
	}
	ctx := context.Background()
	for _, c := range []string{store.Layout.StatusContainer(), store.Layout.ResultsContainer()} {
		if _, err := testenv.BlobService(store).CreateContainer(ctx, c, nil); err != nil {
			t.Fatalf("create %s with a bearer token: %v", c, err)
		}
	}
	data := []byte(strings.Repeat("delegated ", 1000))
	if _, err := store.PutResult(ctx, "job-1", "text/plain", data); err != nil {
		t.Fatal(err)
	}
	st := &record.Status{JobID: "job-1", Kind: "k", State: record.StateSucceeded, Attempt: 1,
		Result: &record.Result{ContentType: "text/plain", Size: int64(len(data)), Blob: storage.ResultBlob("job-1")}}
	if _, err := store.PutStatus(ctx, st, ""); err != nil {
		t.Fatal(err)
	}

	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	h := nightshift.NewHandler(nightshift.NewRegistry(), store, &nightshift.HandlerOptions{Logger: quiet})
	httpapi.New(nightshift.NewClient(store, nil), &httpapi.Options{Logger: quiet}).Register(h)
	e := &env{t: t, store: store, h: h}
	for i := range 2 { // the second link reuses the cached delegation key
		r := e.status("job-1", "")
		var sr struct {
			Result struct {
				URL string `json:"url"`
			}
		}
		if r.status != 200 || json.Unmarshal(r.body, &sr) != nil || sr.Result.URL == "" {
			t.Fatalf("status %d: %s", r.status, r.body)
		}
		u, _ := url.Parse(sr.Result.URL)
		q := u.Query()
		if q.Get("skoid") == "" || q.Get("sktid") == "" || q.Get("sp") != "r" || q.Get("spr") != "https" {
			t.Fatalf("link %d is not a read-only https user delegation SAS: %s", i, sr.Result.URL)
		}
		resp, err := hc.Get(sr.Result.URL) // no credential: the SAS alone
		if err != nil {
			t.Fatal(err)
		}
		got, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || string(got) != string(data) {
			t.Fatalf("GET link %d = %d, %d bytes: %.200s", i, resp.StatusCode, len(got), got)
		}
	}
	// A tampered signature is refused: Azurite checks the delegation signature.
	r := e.status("job-1", "")
	var sr struct{ Result struct{ URL string } }
	_ = json.Unmarshal(r.body, &sr)
	u, _ := url.Parse(sr.Result.URL)
	q := u.Query()
	q.Set("se", time.Now().Add(48*time.Hour).UTC().Format("2006-01-02T15:04:05Z"))
	u.RawQuery = q.Encode()
	resp, err := hc.Get(u.String())
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("GET with a stretched expiry = %d, want 403", resp.StatusCode)
	}
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// selfSigned makes a certificate for host (and 127.0.0.1) and its key, PEM-encoded.
func selfSigned(t *testing.T, host string) ([]byte, []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: host},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		DNSNames: []string{host, "localhost"}, IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IsCA: true, BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb})
}
