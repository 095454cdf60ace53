package main

import (
	"archive/zip"
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/nightshift-jobs/nightshift/internal/appfolder"
)

const testRepoRoot = "../.."

// runPackage runs `nightshift package args...` and returns stdout.
func runPackage(t *testing.T, args ...string) string {
	t.Helper()
	root := newRoot()
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&out)
	root.SetArgs(append([]string{"package"}, args...))
	if err := root.ExecuteContext(context.Background()); err != nil {
		t.Fatalf("nightshift package %v: %v\n%s", args, err, out.String())
	}
	return out.String()
}

// checkPackageZip lists the zip: handler with the executable bit, host.json at the root,
// one folder per function with its function.json, nothing else.
func checkPackageZip(t *testing.T, zipPath string) {
	t.Helper()
	zr, err := zip.OpenReader(zipPath)
	if err != nil {
		t.Fatal(err)
	}
	defer zr.Close()
	files := map[string]os.FileMode{}
	for _, f := range zr.File {
		if !strings.HasSuffix(f.Name, "/") {
			files[f.Name] = f.Mode()
		}
	}
	names, err := appfolder.Functions(testRepoRoot)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"handler", "host.json"}
	for _, n := range names {
		want = append(want, n+"/function.json")
	}
	var got []string
	for name := range files {
		got = append(got, name)
	}
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("zip files = %v, want %v", got, want)
	}
	if m := files["handler"]; m.Perm()&0o111 != 0o111 {
		t.Errorf("handler mode in zip = %v, want executable (0755)", m)
	}
	// An independent unzip must restore the bit too (what Kudu/one-deploy does on Linux).
	if unzip, err := exec.LookPath("unzip"); err == nil {
		dir := t.TempDir()
		if out, err := exec.Command(unzip, "-q", zipPath, "-d", dir).CombinedOutput(); err != nil {
			t.Fatalf("unzip: %v\n%s", err, out)
		}
		fi, err := os.Stat(filepath.Join(dir, "handler"))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm()&0o111 != 0o111 {
			t.Errorf("handler extracted by unzip has mode %v, want executable", fi.Mode())
		}
	}
}

func TestPackageWithPrebuiltHandler(t *testing.T) {
	tmp := t.TempDir()
	bin := filepath.Join(tmp, "prebuilt")
	src := filepath.Join(tmp, "src")
	if err := os.MkdirAll(src, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, content := range map[string]string{"go.mod": "module tiny\n\ngo 1.22\n", "main.go": "package main\n\nfunc main() {}\n"} {
		if err := os.WriteFile(filepath.Join(src, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := appfolder.Build(context.Background(), src, ".", "linux", "amd64", bin); err != nil {
		t.Fatal(err)
	}
	dir, zipPath := filepath.Join(tmp, "app"), filepath.Join(tmp, "dist", "app.zip")
	out := runPackage(t, "--repo", testRepoRoot, "--dir", dir, "--out", zipPath, "--handler-binary", bin, "--json")
	var s packageSummary
	if err := json.Unmarshal([]byte(out), &s); err != nil {
		t.Fatalf("--json output is not JSON: %v\n%s", err, out)
	}
	if s.Dir != dir || s.Zip != zipPath || s.GOOS != "linux" || s.GOARCH != "amd64" || s.ZipBytes <= 0 || len(s.Functions) == 0 {
		t.Errorf("summary = %+v, want dir %s, zip %s, linux/amd64, a size and the functions", s, dir, zipPath)
	}
	checkPackageZip(t, zipPath)

	// Plain output names the folder and the zip.
	out = runPackage(t, "--repo", testRepoRoot, "--dir", dir, "--out", zipPath, "--handler-binary", bin, "--name-prefix", "p1")
	if !strings.Contains(out, dir) || !strings.Contains(out, zipPath) {
		t.Errorf("output does not name the folder and the zip:\n%s", out)
	}
	fj, err := os.ReadFile(filepath.Join(dir, "RunJob", "function.json"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(fj), `"p1-jobs"`) {
		t.Errorf("--name-prefix p1: RunJob/function.json does not listen on p1-jobs:\n%s", fj)
	}
}

func TestPackageUsageErrors(t *testing.T) {
	if code := run(context.Background(), []string{"package", "--no-such-flag"}); code != exitUsage {
		t.Errorf("unknown flag: exit %d, want %d", code, exitUsage)
	}
	if code := run(context.Background(), []string{"package", "extra-arg"}); code != exitUsage {
		t.Errorf("positional argument: exit %d, want %d", code, exitUsage)
	}
	if code := run(context.Background(), []string{"package", "--name-prefix", "Not_Valid"}); code != exitUsage {
		t.Errorf("invalid --name-prefix: exit %d, want %d", code, exitUsage)
	}
	tmp := t.TempDir()
	code := run(context.Background(), []string{"package", "--repo", testRepoRoot, "--dir", filepath.Join(tmp, "app"),
		"--out", filepath.Join(tmp, "app.zip"), "--handler-binary", filepath.Join(tmp, "missing")})
	if code != exitFailure {
		t.Errorf("missing handler binary: exit %d, want %d", code, exitFailure)
	}
}

// TestPackageBuildsHandler runs the real thing: builds ./handler for linux/amd64. It skips
// only while ./handler has no Go files yet.
func TestPackageBuildsHandler(t *testing.T) {
	if files, _ := filepath.Glob(filepath.Join(testRepoRoot, "handler", "*.go")); len(files) == 0 {
		t.Skip("./handler has no Go files yet")
	}
	tmp := t.TempDir()
	zipPath := filepath.Join(tmp, "app.zip")
	runPackage(t, "--repo", testRepoRoot, "--dir", filepath.Join(tmp, "app"), "--out", zipPath)
	checkPackageZip(t, zipPath)
}
