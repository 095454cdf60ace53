package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/nightshift-jobs/nightshift/internal/appfolder"
	"github.com/nightshift-jobs/nightshift/storage"
)

func init() { subcommands = append(subcommands, newPackageCmd) }

// packageSummary is what `nightshift package --json` prints.
type packageSummary struct {
	Dir        string   `json:"dir"`
	Zip        string   `json:"zip"`
	ZipBytes   int64    `json:"zipBytes"`
	Functions  []string `json:"functions"`
	GOOS       string   `json:"goos"`
	GOARCH     string   `json:"goarch"`
	NamePrefix string   `json:"namePrefix"`
}

func newPackageCmd() *cobra.Command {
	var (
		out, dir, prefix, repo, handlerBinary, goos, goarch string
		asJSON                                              bool
	)
	cmd := &cobra.Command{
		Use:   "package",
		Short: "Build the linux/amd64 handler and assemble and zip the Functions app folder",
		Long: `package builds the handler for linux/amd64 (static, trimmed), assembles the app folder
(host.json, handler, one folder per function) and zips it with the handler's executable bit
kept, ready for a Flex Consumption deployment (az functionapp deployment source config-zip).

The folder also works with "func start": copy local/local.settings.template.json to
<dir>/local.settings.json first (it is never put in the zip). On a machine that is not
linux/amd64, build a separate local folder with --goos/--goarch set to the machine's
platform (for example --goos darwin --goarch arm64 --dir dist/local); deploy only the
linux/amd64 zip.

--name-prefix rewrites the functions' queue names with the NIGHTSHIFT_NAME_PREFIX layout; the
deployed app setting NIGHTSHIFT_NAME_PREFIX must then have the same value.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if _, err := storage.NewLayout(prefix); err != nil {
				return usageError{fmt.Errorf("--name-prefix: %w", err)}
			}
			if repo == "" {
				var err error
				if repo, err = findRepoRoot(); err != nil {
					return usageError{err}
				}
			}
			opts := appfolder.Options{
				RepoRoot:      repo,
				HandlerBinary: handlerBinary,
				GOOS:          goos,
				GOARCH:        goarch,
				NamePrefix:    prefix,
			}
			absDir, err := filepath.Abs(dir)
			if err != nil {
				return usageError{fmt.Errorf("--dir %q: %w", dir, err)}
			}
			absZip, err := filepath.Abs(out)
			if err != nil {
				return usageError{fmt.Errorf("--out %q: %w", out, err)}
			}
			if err := appfolder.Assemble(cmd.Context(), absDir, opts); err != nil {
				return fmt.Errorf("assemble app folder: %w", err)
			}
			if err := appfolder.Zip(absDir, absZip); err != nil {
				return fmt.Errorf("zip app folder: %w", err)
			}
			fi, err := os.Stat(absZip)
			if err != nil {
				return err
			}
			names, err := appfolder.Functions(repo)
			if err != nil {
				return err
			}
			s := packageSummary{Dir: absDir, Zip: absZip, ZipBytes: fi.Size(), Functions: names,
				GOOS: opts.GOOS, GOARCH: opts.GOARCH, NamePrefix: prefix}
			w := cmd.OutOrStdout()
			if asJSON {
				enc := json.NewEncoder(w)
				enc.SetIndent("", "  ")
				return enc.Encode(s)
			}
			fmt.Fprintf(w, "app folder: %s\n", s.Dir)
			fmt.Fprintf(w, "zip:        %s (%d bytes, %d functions: %v, %s/%s)\n", s.Zip, s.ZipBytes, len(names), names, s.GOOS, s.GOARCH)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&out, "out", filepath.Join("dist", "app.zip"), "zip file to write")
	f.StringVar(&dir, "dir", filepath.Join("dist", "app"), "app folder to assemble (local.settings.json in it is kept, never zipped)")
	f.StringVar(&prefix, "name-prefix", "", "NIGHTSHIFT_NAME_PREFIX to apply to the functions' queue names")
	f.StringVar(&repo, "repo", "", "repository root holding host.json and functions/ (default: found from the working directory upwards)")
	f.StringVar(&handlerBinary, "handler-binary", "", "use this already-built linux/amd64 handler instead of building ./handler")
	f.StringVar(&goos, "goos", "linux", "GOOS of the handler (Flex Consumption runs linux)")
	f.StringVar(&goarch, "goarch", "amd64", "GOARCH of the handler (Flex Consumption runs amd64)")
	f.BoolVar(&asJSON, "json", false, "print a JSON summary")
	return cmd
}

// findRepoRoot walks up from the working directory to the first folder holding host.json
// and functions/.
func findRepoRoot() (string, error) {
	wd, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for d := wd; ; d = filepath.Dir(d) {
		host, herr := os.Stat(filepath.Join(d, appfolder.HostJSON))
		fns, ferr := os.Stat(filepath.Join(d, appfolder.FunctionsDir))
		if herr == nil && host.Mode().IsRegular() && ferr == nil && fns.IsDir() {
			return d, nil
		}
		if filepath.Dir(d) == d {
			return "", errors.New("no repository root found: no folder from the working directory upwards holds host.json and functions/ (use --repo)")
		}
	}
}
