// Package appfolder assembles the Functions app folder: host.json, the handler binary and
// one folder per function (functions/<Name>/function.json → <Name>/function.json), the
// layout the Functions host expects next to host.json. The same folder serves `func start`
// locally and, zipped with Zip, a Flex Consumption deployment.
package appfolder

import (
	"archive/zip"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"

	"github.com/nightshift-jobs/nightshift/storage"
)

// File and folder names of an app folder.
const (
	// HostJSON is the host configuration file at the root of the repository and of the app folder.
	HostJSON = "host.json"
	// FunctionJSON is the per-function binding file.
	FunctionJSON = "function.json"
	// FunctionsDir is the repository folder holding one folder per function.
	FunctionsDir = "functions"
	// HandlerName is the file name of the handler binary; host.json's
	// customHandler.description.defaultExecutablePath must name it.
	HandlerName = "handler"
	// DefaultHandlerPkg is the Go package built as the handler when Options.HandlerPkg is empty.
	DefaultHandlerPkg = "./handler"
)

// Options say where the sources are and how to build the handler.
type Options struct {
	// RepoRoot is where host.json and functions/ live.
	RepoRoot string
	// HandlerPkg is the Go package to build as the handler, relative to RepoRoot;
	// default "./handler".
	HandlerPkg string
	// HandlerBinary, if set, is an already-built binary copied instead of building.
	HandlerBinary string
	// GOOS and GOARCH select the build target; default: the running program's.
	// Package() (the deployment case) uses linux/amd64.
	GOOS, GOARCH string
	// NamePrefix is an optional NIGHTSHIFT_NAME_PREFIX: every function.json queueName (and
	// the container part of blob paths) is rewritten with storage.NewLayout(prefix).Name so
	// the functions listen on the prefixed queues.
	NamePrefix string
}

// Functions returns the sorted names of the function folders under repoRoot/functions.
// Every folder there must hold a function.json.
func Functions(repoRoot string) ([]string, error) {
	dir := filepath.Join(repoRoot, FunctionsDir)
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("list function folders: %w", err)
	}
	var names []string
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		if _, err := os.Stat(filepath.Join(dir, e.Name(), FunctionJSON)); err != nil {
			return nil, fmt.Errorf("function folder %s: expected a %s in it: %w", filepath.Join(dir, e.Name()), FunctionJSON, err)
		}
		names = append(names, e.Name())
	}
	if len(names) == 0 {
		return nil, fmt.Errorf("no function folders in %s: expected at least one <Name>/%s", dir, FunctionJSON)
	}
	sort.Strings(names)
	return names, nil
}

// Assemble writes the app folder into dst: host.json, the handler binary (mode 0755) and
// <Name>/function.json for each functions/<Name>/. It builds the handler with
// `go build -trimpath -ldflags "-s -w"` and CGO_ENABLED=0 (a static binary) unless
// opts.HandlerBinary is set. Function folders left in dst by an earlier run that no longer
// exist are removed; other files in dst (such as local.settings.json) are kept.
func Assemble(ctx context.Context, dst string, opts Options) error {
	if opts.RepoRoot == "" {
		opts.RepoRoot = "."
	}
	root, err := filepath.Abs(opts.RepoRoot)
	if err != nil {
		return fmt.Errorf("repo root %q: %w", opts.RepoRoot, err)
	}
	dst, err = filepath.Abs(dst)
	if err != nil {
		return fmt.Errorf("app folder %q: %w", dst, err)
	}
	if dst == root || isWithin(dst, filepath.Join(root, FunctionsDir)) {
		return fmt.Errorf("app folder %s: must not be the repository root or inside its functions/ folder", dst)
	}
	layout, err := storage.NewLayout(opts.NamePrefix)
	if err != nil {
		return fmt.Errorf("name prefix: %w", err)
	}
	hostJSON, err := os.ReadFile(filepath.Join(root, HostJSON))
	if err != nil {
		return fmt.Errorf("read host.json: %w", err)
	}
	if err := checkHostJSON(hostJSON); err != nil {
		return err
	}
	names, err := Functions(root)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dst, 0o755); err != nil {
		return fmt.Errorf("create app folder: %w", err)
	}
	if err := removeStaleFunctions(dst, names); err != nil {
		return err
	}
	if err := writeFile(filepath.Join(dst, HostJSON), hostJSON, 0o644); err != nil {
		return err
	}
	for _, name := range names {
		src, err := os.ReadFile(filepath.Join(root, FunctionsDir, name, FunctionJSON))
		if err != nil {
			return fmt.Errorf("read function %s: %w", name, err)
		}
		out, err := rewriteFunctionJSON(src, layout)
		if err != nil {
			return fmt.Errorf("function %s: %w", name, err)
		}
		if err := os.MkdirAll(filepath.Join(dst, name), 0o755); err != nil {
			return fmt.Errorf("create function folder %s: %w", name, err)
		}
		if err := writeFile(filepath.Join(dst, name, FunctionJSON), out, 0o644); err != nil {
			return err
		}
	}
	return installHandler(ctx, root, dst, opts)
}

// checkHostJSON makes sure host.json parses and starts the binary this package installs.
func checkHostJSON(b []byte) error {
	var h struct {
		CustomHandler *struct {
			Description struct {
				DefaultExecutablePath string `json:"defaultExecutablePath"`
			} `json:"description"`
		} `json:"customHandler"`
	}
	if err := json.Unmarshal(b, &h); err != nil {
		return fmt.Errorf("host.json is not valid JSON: %w", err)
	}
	if h.CustomHandler == nil {
		return errors.New("host.json has no customHandler section: expected customHandler.description.defaultExecutablePath \"handler\"")
	}
	if p := h.CustomHandler.Description.DefaultExecutablePath; p != HandlerName {
		return fmt.Errorf("host.json customHandler.description.defaultExecutablePath is %q: expected %q, the binary the app folder holds", p, HandlerName)
	}
	return nil
}

// removeStaleFunctions deletes folders in dst that hold a function.json but are not among
// the current functions (a renamed or removed function must not keep running).
func removeStaleFunctions(dst string, names []string) error {
	keep := map[string]bool{}
	for _, n := range names {
		keep[n] = true
	}
	entries, err := os.ReadDir(dst)
	if err != nil {
		return fmt.Errorf("read app folder: %w", err)
	}
	for _, e := range entries {
		if !e.IsDir() || keep[e.Name()] {
			continue
		}
		if _, err := os.Stat(filepath.Join(dst, e.Name(), FunctionJSON)); err != nil {
			continue
		}
		if err := os.RemoveAll(filepath.Join(dst, e.Name())); err != nil {
			return fmt.Errorf("remove stale function folder %s: %w", e.Name(), err)
		}
	}
	return nil
}

// rewriteFunctionJSON applies the layout's prefix to queue names and blob container names.
// With no prefix the file is copied byte for byte.
func rewriteFunctionJSON(src []byte, layout storage.Layout) ([]byte, error) {
	var doc map[string]any
	if err := json.Unmarshal(src, &doc); err != nil {
		return nil, fmt.Errorf("function.json is not valid JSON: %w", err)
	}
	bindings, ok := doc["bindings"].([]any)
	if !ok {
		return nil, errors.New("function.json has no \"bindings\" array")
	}
	if layout.Prefix() == "" {
		return src, nil
	}
	for i, b := range bindings {
		m, ok := b.(map[string]any)
		if !ok {
			return nil, fmt.Errorf("binding %d is not an object", i)
		}
		if q, ok := m["queueName"].(string); ok && isLiteralName(q) {
			m["queueName"] = layout.Name(q)
		}
		if p, ok := m["path"].(string); ok && strings.Contains(strings.ToLower(fmt.Sprint(m["type"])), "blob") {
			container, rest, hasBlob := strings.Cut(p, "/")
			if isLiteralName(container) {
				p = layout.Name(container)
				if hasBlob {
					p += "/" + rest
				}
				m["path"] = p
			}
		}
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	if err := enc.Encode(doc); err != nil {
		return nil, fmt.Errorf("encode function.json: %w", err)
	}
	return buf.Bytes(), nil
}

// isLiteralName reports whether a queue or container name is a literal (not an
// %AppSetting% or {binding expression}, which the host resolves itself).
func isLiteralName(s string) bool {
	return s != "" && !strings.ContainsAny(s, "%{}")
}

// installHandler builds or copies the handler binary to dst/handler with mode 0755. It
// writes a temporary file and renames it, so a host still running the old binary is not
// disturbed ("text file busy").
func installHandler(ctx context.Context, root, dst string, opts Options) error {
	final := filepath.Join(dst, HandlerName)
	tmp, err := os.CreateTemp(dst, ".handler-*")
	if err != nil {
		return fmt.Errorf("create handler file: %w", err)
	}
	tmpName := tmp.Name()
	defer os.Remove(tmpName) // no-op after the rename
	if opts.HandlerBinary != "" {
		in, err := os.Open(opts.HandlerBinary)
		if err != nil {
			tmp.Close()
			return fmt.Errorf("open handler binary: %w", err)
		}
		_, err = io.Copy(tmp, in)
		in.Close()
		if err != nil {
			tmp.Close()
			return fmt.Errorf("copy handler binary %s: %w", opts.HandlerBinary, err)
		}
		if err := tmp.Close(); err != nil {
			return fmt.Errorf("write handler binary: %w", err)
		}
	} else {
		tmp.Close()
		if err := Build(ctx, root, opts.HandlerPkg, opts.GOOS, opts.GOARCH, tmpName); err != nil {
			return err
		}
	}
	if err := os.Chmod(tmpName, 0o755); err != nil {
		return fmt.Errorf("make handler executable: %w", err)
	}
	if err := os.Rename(tmpName, final); err != nil {
		return fmt.Errorf("install handler: %w", err)
	}
	return nil
}

// Build compiles the Go package pkg (relative to dir; default "./handler") into out for
// goos/goarch (default: the running program's) as a static, trimmed binary:
// CGO_ENABLED=0 go build -trimpath -ldflags "-s -w".
func Build(ctx context.Context, dir, pkg, goos, goarch, out string) error {
	if pkg == "" {
		pkg = DefaultHandlerPkg
	}
	if goos == "" {
		goos = runtime.GOOS
	}
	if goarch == "" {
		goarch = runtime.GOARCH
	}
	absOut, err := filepath.Abs(out)
	if err != nil {
		return fmt.Errorf("handler output %q: %w", out, err)
	}
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-ldflags", "-s -w", "-o", absOut, pkg)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS="+goos, "GOARCH="+goarch)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	cmd.Stdout = &stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("build handler %s for %s/%s: %w\n%s", pkg, goos, goarch, err, strings.TrimSpace(stderr.String()))
	}
	return nil
}

// Excluded reports whether Zip leaves a file out of the package: local-only settings and
// Azurite's working files never belong in a deployment.
func Excluded(rel string) bool {
	base := filepath.Base(rel)
	switch {
	case base == "local.settings.json", base == ".funcignore":
		return true
	case strings.HasPrefix(base, "__azurite_db"), base == "__blobstorage__", base == "__queuestorage__":
		return true
	case strings.HasPrefix(base, ".handler-"): // a temporary file of an interrupted Assemble
		return true
	}
	return false
}

// Zip packs the app folder src into zipPath, paths relative to src (host.json at the root),
// with Unix modes in the zip headers: 0755 for the handler at the root (the Flex package is
// mounted read-only; a lost executable bit cannot be fixed at runtime), 0644 for other files,
// whatever the local file system reports (Windows has no executable bit). Files for
// which Excluded is true are left out. The zip is written to a temporary file and renamed.
func Zip(src, zipPath string) error {
	absSrc, err := filepath.Abs(src)
	if err != nil {
		return fmt.Errorf("app folder %q: %w", src, err)
	}
	absZip, err := filepath.Abs(zipPath)
	if err != nil {
		return fmt.Errorf("zip path %q: %w", zipPath, err)
	}
	if isWithin(absZip, absSrc) {
		return fmt.Errorf("zip %s: must not be inside the app folder %s", absZip, absSrc)
	}
	if _, err := os.Stat(filepath.Join(absSrc, HostJSON)); err != nil {
		return fmt.Errorf("app folder %s: expected host.json at its root: %w", absSrc, err)
	}
	if err := os.MkdirAll(filepath.Dir(absZip), 0o755); err != nil {
		return fmt.Errorf("create zip folder: %w", err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(absZip), ".app-*.zip")
	if err != nil {
		return fmt.Errorf("create zip: %w", err)
	}
	defer os.Remove(tmp.Name())
	zw := zip.NewWriter(tmp)
	walkErr := filepath.WalkDir(absSrc, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		return addToZip(zw, absSrc, path, d)
	})
	if walkErr != nil {
		zw.Close()
		tmp.Close()
		return fmt.Errorf("zip %s: %w", absSrc, walkErr)
	}
	if err := zw.Close(); err != nil {
		tmp.Close()
		return fmt.Errorf("finish zip: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write zip: %w", err)
	}
	if err := os.Rename(tmp.Name(), absZip); err != nil {
		return fmt.Errorf("install zip: %w", err)
	}
	return nil
}

// addToZip adds one entry of the walk of absSrc: folders as folder entries, regular files
// with their content; excluded paths are skipped and anything else is an error.
func addToZip(zw *zip.Writer, absSrc, path string, d fs.DirEntry) error {
	rel, err := filepath.Rel(absSrc, path)
	if err != nil {
		return err
	}
	if rel == "." {
		return nil
	}
	if Excluded(rel) {
		if d.IsDir() {
			return filepath.SkipDir
		}
		return nil
	}
	info, err := d.Info()
	if err != nil {
		return err
	}
	if !d.IsDir() && !info.Mode().IsRegular() {
		return fmt.Errorf("%s: only regular files and folders can be packaged (mode %v)", rel, info.Mode())
	}
	hdr, err := zip.FileInfoHeader(info) // sets the Unix mode in the external attributes
	if err != nil {
		return err
	}
	hdr.Name = filepath.ToSlash(rel)
	if d.IsDir() {
		hdr.Name += "/"
		hdr.SetMode(fs.ModeDir | 0o755)
		_, err = zw.CreateHeader(hdr)
		return err
	}
	return addFile(zw, hdr, path)
}

// addFile writes one regular file, deflated, with an explicit Unix mode.
func addFile(zw *zip.Writer, hdr *zip.FileHeader, path string) error {
	// Set Unix modes explicitly: on Windows the file system reports no executable bit,
	// and the Flex host needs it on the handler.
	if hdr.Name == HandlerName {
		hdr.SetMode(0o755)
	} else {
		hdr.SetMode(0o644)
	}
	hdr.Method = zip.Deflate
	w, err := zw.CreateHeader(hdr)
	if err != nil {
		return err
	}
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = io.Copy(w, f)
	return err
}

func writeFile(path string, b []byte, mode os.FileMode) error {
	if err := os.WriteFile(path, b, mode); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// isWithin reports whether path is dir or below it (both absolute and clean).
func isWithin(path, dir string) bool {
	rel, err := filepath.Rel(dir, path)
	return err == nil && rel != ".." && !strings.HasPrefix(rel, ".."+string(filepath.Separator))
}
