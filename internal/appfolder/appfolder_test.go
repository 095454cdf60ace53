package appfolder_test

import (
	"archive/zip"
	"bytes"
	"context"
	"debug/elf"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/nightshift-jobs/nightshift/internal/appfolder"
	"github.com/nightshift-jobs/nightshift/storage"
)

const repoRoot = "../.."

// tinyBinary builds a small main package for the running platform and returns its path.
func tinyBinary(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	mustWrite(t, filepath.Join(dir, "go.mod"), "module tiny\n\ngo 1.22\n", 0o644)
	mustWrite(t, filepath.Join(dir, "main.go"), "package main\n\nimport \"fmt\"\n\nfunc main() { fmt.Print(\"tiny-handler\") }\n", 0o644)
	out := filepath.Join(t.TempDir(), "tiny")
	if err := appfolder.Build(context.Background(), dir, ".", "", "", out); err != nil {
		t.Fatalf("build tiny binary: %v", err)
	}
	return out
}

func mustWrite(t *testing.T, path, content string, mode os.FileMode) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// queueNames returns the queueName of every binding in a function.json.
func queueNames(t *testing.T, b []byte) []string {
	t.Helper()
	var doc struct {
		Bindings []map[string]any `json:"bindings"`
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatalf("function.json: %v", err)
	}
	var out []string
	for _, bd := range doc.Bindings {
		if q, ok := bd["queueName"].(string); ok {
			out = append(out, q)
		}
	}
	return out
}

func TestFunctionsListsRepoFunctions(t *testing.T) {
	names, err := appfolder.Functions(repoRoot)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"RunDeadLetter", "RunJob"} {
		if !slices.Contains(names, want) {
			t.Errorf("Functions(repo) = %v, missing %s", names, want)
		}
	}
	if !slices.IsSorted(names) {
		t.Errorf("Functions(repo) = %v, want sorted", names)
	}
}

func TestFunctionsRejectsFolderWithoutFunctionJSON(t *testing.T) {
	root := t.TempDir()
	mustWrite(t, filepath.Join(root, "functions", "Good", "function.json"), `{"bindings":[]}`, 0o644)
	if err := os.MkdirAll(filepath.Join(root, "functions", "Empty"), 0o755); err != nil {
		t.Fatal(err)
	}
	_, err := appfolder.Functions(root)
	if err == nil || !strings.Contains(err.Error(), "Empty") {
		t.Fatalf("Functions = %v, want an error naming the folder without function.json", err)
	}
}

func TestAssembleWithPrebuiltBinary(t *testing.T) {
	bin := tinyBinary(t)
	dst := filepath.Join(t.TempDir(), "app")
	if err := appfolder.Assemble(context.Background(), dst, appfolder.Options{RepoRoot: repoRoot, HandlerBinary: bin}); err != nil {
		t.Fatal(err)
	}
	if got, want := mustRead(t, filepath.Join(dst, "host.json")), mustRead(t, filepath.Join(repoRoot, "host.json")); !bytes.Equal(got, want) {
		t.Errorf("host.json differs from the repository's")
	}
	names, err := appfolder.Functions(repoRoot)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range names {
		got := mustRead(t, filepath.Join(dst, n, "function.json"))
		want := mustRead(t, filepath.Join(repoRoot, "functions", n, "function.json"))
		if !bytes.Equal(got, want) {
			t.Errorf("%s/function.json without a prefix must be copied verbatim", n)
		}
	}
	fi, err := os.Stat(filepath.Join(dst, "handler"))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o755 {
		t.Errorf("handler mode = %v, want 0755", fi.Mode().Perm())
	}
	out, err := exec.Command(filepath.Join(dst, "handler")).Output()
	if err != nil || string(out) != "tiny-handler" {
		t.Errorf("running the copied handler: %q, %v", out, err)
	}
}

func TestAssembleNamePrefixRewritesQueues(t *testing.T) {
	bin := tinyBinary(t)
	dst := t.TempDir()
	if err := appfolder.Assemble(context.Background(), dst, appfolder.Options{RepoRoot: repoRoot, HandlerBinary: bin, NamePrefix: "t1"}); err != nil {
		t.Fatal(err)
	}
	layout, err := storage.NewLayout("t1")
	if err != nil {
		t.Fatal(err)
	}
	if got := queueNames(t, mustRead(t, filepath.Join(dst, "RunJob", "function.json"))); !slices.Equal(got, []string{layout.JobsQueue()}) {
		t.Errorf("RunJob queues = %v, want [%s]", got, layout.JobsQueue())
	}
	poison := layout.PoisonQueue(layout.JobsQueue())
	if got := queueNames(t, mustRead(t, filepath.Join(dst, "RunDeadLetter", "function.json"))); !slices.Equal(got, []string{poison}) {
		t.Errorf("RunDeadLetter queues = %v, want [%s]", got, poison)
	}
}

func TestAssembleNamePrefixBlobPathsAndExpressions(t *testing.T) {
	root := t.TempDir()
	mustWrite(t, filepath.Join(root, "host.json"), mustString(t, filepath.Join(repoRoot, "host.json")), 0o644)
	mustWrite(t, filepath.Join(root, "functions", "F", "function.json"), `{
  "bindings": [
    {"name": "m", "type": "queueTrigger", "direction": "in", "queueName": "jobs"},
    {"name": "q", "type": "queue", "direction": "out", "queueName": "%OTHER_QUEUE%"},
    {"name": "b", "type": "blob", "direction": "out", "path": "nightshift-results/{rand-guid}"},
    {"name": "c", "type": "blob", "direction": "out", "path": "{containerFromMessage}/x"},
    {"name": "t", "type": "timerTrigger", "direction": "in", "schedule": "0 */5 * * * *"}
  ]
}`, 0o644)
	dst := t.TempDir()
	if err := appfolder.Assemble(context.Background(), dst, appfolder.Options{RepoRoot: root, HandlerBinary: tinyBinary(t), NamePrefix: "ab-1"}); err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Bindings []map[string]any `json:"bindings"`
	}
	if err := json.Unmarshal(mustRead(t, filepath.Join(dst, "F", "function.json")), &doc); err != nil {
		t.Fatal(err)
	}
	want := []struct{ key, value string }{
		{"queueName", "ab-1-jobs"},
		{"queueName", "%OTHER_QUEUE%"},
		{"path", "ab-1-nightshift-results/{rand-guid}"},
		{"path", "{containerFromMessage}/x"},
		{"schedule", "0 */5 * * * *"},
	}
	if len(doc.Bindings) != len(want) {
		t.Fatalf("got %d bindings, want %d", len(doc.Bindings), len(want))
	}
	for i, w := range want {
		if got := doc.Bindings[i][w.key]; got != w.value {
			t.Errorf("binding %d %s = %v, want %q", i, w.key, got, w.value)
		}
	}
}

func mustString(t *testing.T, path string) string { return string(mustRead(t, path)) }

func TestAssembleRejectsBadInput(t *testing.T) {
	bin := tinyBinary(t)
	ctx := context.Background()
	if err := appfolder.Assemble(ctx, t.TempDir(), appfolder.Options{RepoRoot: repoRoot, HandlerBinary: bin, NamePrefix: "Bad_Prefix"}); err == nil {
		t.Error("invalid name prefix accepted")
	}
	if err := appfolder.Assemble(ctx, repoRoot, appfolder.Options{RepoRoot: repoRoot, HandlerBinary: bin}); err == nil {
		t.Error("assembling into the repository root accepted")
	}
	root := t.TempDir()
	mustWrite(t, filepath.Join(root, "host.json"), `{"version":"2.0","customHandler":{"description":{"defaultExecutablePath":"bin/app"}}}`, 0o644)
	mustWrite(t, filepath.Join(root, "functions", "F", "function.json"), `{"bindings":[]}`, 0o644)
	err := appfolder.Assemble(ctx, t.TempDir(), appfolder.Options{RepoRoot: root, HandlerBinary: bin})
	if err == nil || !strings.Contains(err.Error(), "defaultExecutablePath") {
		t.Errorf("host.json starting another binary: err = %v, want a defaultExecutablePath error", err)
	}
	err = appfolder.Assemble(ctx, t.TempDir(), appfolder.Options{RepoRoot: repoRoot, HandlerBinary: filepath.Join(t.TempDir(), "missing")})
	if err == nil {
		t.Error("missing handler binary accepted")
	}
}

func TestAssembleRemovesStaleFunctionsKeepsLocalSettings(t *testing.T) {
	dst := t.TempDir()
	mustWrite(t, filepath.Join(dst, "Gone", "function.json"), `{"bindings":[]}`, 0o644)
	mustWrite(t, filepath.Join(dst, "local.settings.json"), `{"IsEncrypted":false}`, 0o600)
	if err := appfolder.Assemble(context.Background(), dst, appfolder.Options{RepoRoot: repoRoot, HandlerBinary: tinyBinary(t)}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dst, "Gone")); !os.IsNotExist(err) {
		t.Errorf("stale function folder Gone still present (stat err %v)", err)
	}
	if _, err := os.Stat(filepath.Join(dst, "local.settings.json")); err != nil {
		t.Errorf("local.settings.json was removed: %v", err)
	}
}

// zipEntries maps each entry name to its header.
func zipEntries(t *testing.T, path string) (map[string]*zip.File, *zip.ReadCloser) {
	t.Helper()
	zr, err := zip.OpenReader(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { zr.Close() })
	m := map[string]*zip.File{}
	for _, f := range zr.File {
		m[f.Name] = f
	}
	return m, zr
}

func TestZipKeepsExecutableBitAndLayout(t *testing.T) {
	dst := t.TempDir()
	if err := appfolder.Assemble(context.Background(), dst, appfolder.Options{RepoRoot: repoRoot, HandlerBinary: tinyBinary(t)}); err != nil {
		t.Fatal(err)
	}
	mustWrite(t, filepath.Join(dst, "local.settings.json"), `{"Values":{"secret":"x"}}`, 0o600)
	mustWrite(t, filepath.Join(dst, "__azurite_db_queue__.json"), `{}`, 0o644)
	zipPath := filepath.Join(t.TempDir(), "out", "app.zip")
	if err := appfolder.Zip(dst, zipPath); err != nil {
		t.Fatal(err)
	}
	entries, _ := zipEntries(t, zipPath)
	h, ok := entries["handler"]
	if !ok {
		t.Fatalf("zip has no handler at the root; entries %v", keys(entries))
	}
	if h.Mode().Perm() != 0o755 || h.Mode()&0o111 == 0 {
		t.Errorf("handler mode in zip = %v, want 0755", h.Mode())
	}
	if h.CreatorVersion>>8 != 3 { // 3 = Unix: the external attributes carry a Unix mode
		t.Errorf("handler creator OS = %d, want 3 (Unix)", h.CreatorVersion>>8)
	}
	if _, ok := entries["host.json"]; !ok {
		t.Errorf("zip has no host.json at the root")
	}
	names, _ := appfolder.Functions(repoRoot)
	for _, n := range names {
		f, ok := entries[n+"/function.json"]
		if !ok {
			t.Errorf("zip has no %s/function.json", n)
			continue
		}
		rc, err := f.Open()
		if err != nil {
			t.Fatal(err)
		}
		got, _ := io.ReadAll(rc)
		rc.Close()
		if !bytes.Equal(got, mustRead(t, filepath.Join(repoRoot, "functions", n, "function.json"))) {
			t.Errorf("%s/function.json content differs in the zip", n)
		}
	}
	for _, excluded := range []string{"local.settings.json", "__azurite_db_queue__.json"} {
		if _, ok := entries[excluded]; ok {
			t.Errorf("zip contains %s; local-only files must be left out", excluded)
		}
	}
	if err := appfolder.Zip(dst, filepath.Join(dst, "self.zip")); err == nil {
		t.Error("zip inside the folder it packs accepted")
	}
}

func keys(m map[string]*zip.File) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// TestAssembleBuildsRepoHandler builds the real ./handler package for linux/amd64, as
// packaging does. It skips only while ./handler has no Go files yet.
func TestAssembleBuildsRepoHandler(t *testing.T) {
	goFiles, _ := filepath.Glob(filepath.Join(repoRoot, "handler", "*.go"))
	if len(goFiles) == 0 {
		t.Skip("./handler has no Go files yet")
	}
	dst := t.TempDir()
	opts := appfolder.Options{RepoRoot: repoRoot, GOOS: "linux", GOARCH: "amd64"}
	if err := appfolder.Assemble(context.Background(), dst, opts); err != nil {
		t.Fatal(err)
	}
	f, err := elf.Open(filepath.Join(dst, "handler"))
	if err != nil {
		t.Fatalf("handler is not an ELF binary: %v", err)
	}
	defer f.Close()
	if f.Machine != elf.EM_X86_64 {
		t.Errorf("handler machine = %v, want x86-64", f.Machine)
	}
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP { // a dynamic loader: not a static binary
			t.Errorf("handler is dynamically linked; want a static binary (CGO_ENABLED=0)")
		}
	}
}

// TestZipForcesHandlerMode covers systems whose file system has no executable bit (Windows):
// the zip must mark the handler 0755 even when the file on disk is not executable.
func TestZipForcesHandlerMode(t *testing.T) {
	src := t.TempDir()
	mustWrite(t, filepath.Join(src, "host.json"), `{}`, 0o644)
	mustWrite(t, filepath.Join(src, "handler"), "not really a binary", 0o644)
	mustWrite(t, filepath.Join(src, "RunJob", "function.json"), `{"bindings":[]}`, 0o600)
	zipPath := filepath.Join(t.TempDir(), "app.zip")
	if err := appfolder.Zip(src, zipPath); err != nil {
		t.Fatal(err)
	}
	entries, _ := zipEntries(t, zipPath)
	if m := entries["handler"].Mode(); m.Perm() != 0o755 {
		t.Errorf("handler mode = %v, want 0755", m)
	}
	if m := entries["RunJob/function.json"].Mode(); m.Perm() != 0o644 {
		t.Errorf("function.json mode = %v, want 0644", m)
	}
	if m := entries["RunJob/"].Mode(); !m.IsDir() {
		t.Errorf("RunJob/ mode = %v, want a directory", m)
	}
}
