package callback_test

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nightshift-jobs/nightshift/callback"
	"github.com/nightshift-jobs/nightshift/internal/testenv"
)

// docBlock returns the first fenced code block of the given language in the "Webhook
// signatures" section of docs/client.md.
func docBlock(t *testing.T, lang string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(testenv.RepoRoot(), "docs", "client.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(b), "### Webhook signatures")
	if !ok {
		t.Fatal(`docs/client.md has no "### Webhook signatures" section`)
	}
	_, rest, ok := strings.Cut(section, "```"+lang+"\n")
	if !ok {
		t.Fatalf("docs/client.md's webhook section has no %s block", lang)
	}
	code, _, ok := strings.Cut(rest, "```")
	if !ok {
		t.Fatalf("unterminated %s block", lang)
	}
	return code
}

// TestDocVerifiers runs the Python and Node verifiers of docs/client.md against requests
// nightshift signed: a rotation (two signatures; the receiver holds only the new secret)
// passes; a changed body, a wrong secret, an old timestamp and an empty secret list fail.
func TestDocVerifiers(t *testing.T) {
	body := `{"event":"job.succeeded","job_id":"j1"}`
	now := time.Now()
	sign := func(at time.Time) map[string]string {
		sig, err := callback.Sign([]string{secret, otherSecret}, "msg_doc", at, []byte(body))
		if err != nil {
			t.Fatal(err)
		}
		return map[string]string{"webhook-id": "msg_doc", "webhook-timestamp": strconv.FormatInt(at.Unix(), 10), "webhook-signature": sig}
	}
	type tc struct {
		Name    string            `json:"name"`
		Secrets []string          `json:"secrets"`
		Headers map[string]string `json:"headers"`
		Body    string            `json:"body"`
		Want    bool              `json:"want"`
	}
	cases := []tc{
		{"rotation, new secret only", []string{otherSecret}, sign(now), body, true},
		{"old secret", []string{secret}, sign(now), body, true},
		{"changed body", []string{otherSecret}, sign(now), body + " ", false},
		{"wrong secret", []string{"whsec_" + strings.Repeat("QUJD", 8)}, sign(now), body, false},
		{"old timestamp", []string{secret}, sign(now.Add(-10 * time.Minute)), body, false},
		{"no secrets", []string{}, sign(now), body, false},
	}
	input, _ := json.Marshal(cases)
	dir := t.TempDir()
	for _, rt := range []struct{ lang, bin, file, driver string }{
		{"python", "python3", "verify.py", `
import json, sys
for c in json.load(sys.stdin):
    try:
        verify(c["secrets"], c["headers"], c["body"].encode())
        ok = True
    except Exception:
        ok = False
    print(c["name"], "ok" if ok == c["want"] else "WRONG")
`},
		{"js", "node", "verify.js", `
const cases = JSON.parse(require("node:fs").readFileSync(0, "utf8"));
for (const c of cases) {
  let ok = true;
  try { verify(c.secrets, c.headers, Buffer.from(c.body)); } catch (e) { ok = false; }
  console.log(c.name, ok === c.want ? "ok" : "WRONG");
}
`},
	} {
		t.Run(rt.bin, func(t *testing.T) {
			bin, err := exec.LookPath(rt.bin)
			if err != nil {
				t.Skipf("%s not found", rt.bin)
			}
			file := filepath.Join(dir, rt.file)
			if err := os.WriteFile(file, []byte(docBlock(t, rt.lang)+rt.driver), 0o600); err != nil {
				t.Fatal(err)
			}
			cmd := exec.Command(bin, file)
			cmd.Stdin = strings.NewReader(string(input))
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("%s: %v\n%s", rt.bin, err, out)
			}
			lines := strings.Split(strings.TrimSpace(string(out)), "\n")
			if len(lines) != len(cases) {
				t.Fatalf("%s printed %d lines, want %d:\n%s", rt.bin, len(lines), len(cases), out)
			}
			for _, l := range lines {
				if !strings.HasSuffix(l, " ok") {
					t.Errorf("%s: %s", rt.bin, l)
				}
			}
		})
	}
}
