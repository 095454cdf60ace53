package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/nightshift-jobs/nightshift/internal/appfolder"
	"github.com/nightshift-jobs/nightshift/internal/funchost"
	"github.com/nightshift-jobs/nightshift/internal/proc"
	"github.com/nightshift-jobs/nightshift/storage"
)

func init() { subcommands = append(subcommands, newDevCmd) }

// devConfig is what `nightshift dev` runs with.
type devConfig struct {
	// Repo is the repository root (host.json, functions/, handler/, local/).
	Repo string
	// Getenv reads the settings (storage, prefix, anything the handler reads).
	Getenv func(string) string
	// HTTPAddr is where HTTP functions listen.
	HTTPAddr string
	// UIAddr is where the dashboard listens ("" for none).
	UIAddr string
	// TimeZone evaluates timer schedules.
	TimeZone *time.Location
	// HandlerBinary, when set, is used instead of building ./handler.
	HandlerBinary string
	// NoAzurite refuses to start Azurite when storage is unreachable.
	NoAzurite bool
	// NoRestart ends dev when the local host shuts itself down after three handler
	// failures, instead of starting a new host.
	NoRestart bool
	// StateDir holds the app folder and Azurite's data; default <Repo>/.nightshift.
	StateDir string
	// SettingsFile is a local.settings.json whose Values are app settings (the environment
	// wins); default local/local.settings.json, else local/local.settings.template.json.
	SettingsFile string
	// Out receives the summary; Log the host's log.
	Out io.Writer
	Log *slog.Logger
	// Ready, when set, is called once the local host is starting (tests).
	Ready func(*devInfo)
}

// devInfo describes a running dev environment.
type devInfo struct {
	AppDir     string
	AzuritePID int // 0 when storage was already reachable
	Clients    *storage.Clients
	Host       *funchost.Host
	UIURL      string // the dashboard's login URL ("" when it does not run)
}

func newDevCmd() *cobra.Command {
	var repo, httpAddr, uiAddr, tz, handlerBinary, settingsFile string
	var noAzurite, noRestart bool
	cmd := &cobra.Command{
		Use:   "dev",
		Short: "Run the whole pipeline locally: Azurite, queues and containers, the handler and the local Functions host",
		Long: `dev runs nightshift locally without Azure and without Functions Core Tools:

  1. storage: uses AzureWebJobsStorage (default UseDevelopmentStorage=true). When that is a
     loopback endpoint nobody answers on, it installs the pinned Azurite (npm ci --prefix local,
     first run only) and starts it with its data under .nightshift/azurite;
  2. creates the queues and containers (NIGHTSHIFT_NAME_PREFIX applies);
  3. builds ./handler and assembles the app folder in .nightshift/app (host.json, handler,
     one folder per function);
  4. starts nightshift's local Functions host (package funchost), which reads the same
     host.json and function.json files as the real host and drives the handler the same way.
     When the host shuts itself down after three handler failures, dev starts a new one
     (after 1 s, doubling up to 1 min), as Azure does; --no-restart exits instead.

Ctrl-C stops the host, the handler and the Azurite it started (by process id), nothing else.
See docs/local-host.md.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if repo == "" {
				var err error
				if repo, err = findRepoRoot(); err != nil {
					return usageError{err}
				}
			}
			loc, err := time.LoadLocation(tz)
			if err != nil {
				return usageError{fmt.Errorf("--tz %q: %w", tz, err)}
			}
			log := slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), &slog.HandlerOptions{Level: slog.LevelInfo}))
			return runDev(cmd.Context(), devConfig{
				Repo: repo, Getenv: os.Getenv, HTTPAddr: httpAddr, UIAddr: uiAddr, TimeZone: loc,
				HandlerBinary: handlerBinary, NoAzurite: noAzurite, NoRestart: noRestart, SettingsFile: settingsFile, Out: cmd.OutOrStdout(), Log: log,
			})
		},
	}
	cmd.Flags().StringVar(&repo, "repo", "", "repository root (default: found from the working directory)")
	cmd.Flags().StringVar(&httpAddr, "http", "127.0.0.1:7071", "address for HTTP functions")
	cmd.Flags().StringVar(&uiAddr, "ui", defaultUIAddr, "address for the web dashboard (\"\" for none; docs/dashboard.md)")
	cmd.Flags().StringVar(&tz, "tz", "UTC", "IANA time zone for timer schedules")
	cmd.Flags().StringVar(&handlerBinary, "handler-binary", "", "use this handler binary instead of building ./handler")
	cmd.Flags().BoolVar(&noAzurite, "no-azurite", false, "fail instead of starting Azurite when storage is unreachable")
	cmd.Flags().BoolVar(&noRestart, "no-restart", false, "exit when the local host shuts down after three handler failures, instead of starting a new host as Azure does")
	cmd.Flags().StringVar(&settingsFile, "settings", "", "local.settings.json whose Values are app settings; the environment wins (default local/local.settings.json, else local/local.settings.template.json)")
	return cmd
}

// devStorageDefault is the storage setting when none is given.
const devStorageDefault = "UseDevelopmentStorage=true"

func runDev(ctx context.Context, cfg devConfig) error {
	settings, getenv, err := devSettings(cfg)
	if err != nil {
		return err
	}
	clients, err := storage.FromEnv(getenv, nil)
	if err != nil {
		return err
	}
	info := &devInfo{Clients: clients}
	stateDir := cfg.StateDir
	if stateDir == "" {
		stateDir = filepath.Join(cfg.Repo, ".nightshift")
	}

	// 1. Storage: reachable already, or start Azurite on the configured loopback ports.
	stop, err := devStorage(ctx, cfg, info, stateDir)
	if err != nil {
		return err
	}
	defer stop()
	info.UIURL = startDevUI(ctx, cfg, clients, getenv)

	// 2. The app folder.
	info.AppDir = filepath.Join(stateDir, "app")
	fmt.Fprintf(cfg.Out, "Building the handler and assembling the app folder in %s …\n", info.AppDir)
	if err := appfolder.Assemble(ctx, info.AppDir, appfolder.Options{
		RepoRoot: cfg.Repo, HandlerBinary: cfg.HandlerBinary, NamePrefix: clients.Layout.Prefix(),
	}); err != nil {
		return fmt.Errorf("assemble the app folder: %w", err)
	}

	// 3. The local host.
	newHost := func() (*funchost.Host, error) {
		return funchost.New(info.AppDir, funchost.Options{
			Settings: settings, Getenv: cfg.Getenv, Logger: cfg.Log, TimeZone: cfg.TimeZone,
			HTTPAddr: cfg.HTTPAddr, Development: true,
		})
	}
	first := true
	return superviseHost(ctx, cfg, newHost, func(h *funchost.Host) {
		info.Host = h
		if first {
			first = false
			printDevSummary(cfg, info, h)
			if cfg.Ready != nil {
				cfg.Ready(info)
			}
		}
	})
}

// Restart back-off of the local host: the first restart waits restartBase, each next one
// twice as long up to restartMax; a host that ran restartReset resets it.
const (
	restartBase  = time.Second
	restartMax   = time.Minute
	restartReset = 5 * time.Minute
)

// superviseHost runs local hosts one after another until ctx ends: when a host shuts
// itself down because its handler failed three times (the real host's rule,
// docs/host-contract.md §1.3), a new one starts after a back-off, as the platform starts a
// new host on Azure. Any other end of a host, or one with cfg.NoRestart, ends dev.
func superviseHost(ctx context.Context, cfg devConfig, newHost func() (*funchost.Host, error), started func(*funchost.Host)) error {
	wait := restartBase
	for {
		h, err := newHost()
		if err != nil {
			return err
		}
		started(h)
		began := time.Now()
		err = h.Run(ctx)
		if ctx.Err() != nil || cfg.NoRestart || !errors.Is(err, funchost.ErrHandlerRestarts) {
			return err
		}
		if time.Since(began) >= restartReset {
			wait = restartBase
		}
		fmt.Fprintf(cfg.Out, "The local host shut down after three handler failures (%v); starting a new host in %s, as Azure would (--no-restart stops instead)\n", err, wait)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(wait):
		}
		wait = min(2*wait, restartMax)
	}
}

// devSettings reads local.settings.json (the environment wins), defaults the storage to
// the development storage, and returns the settings with a getenv over them.
func devSettings(cfg devConfig) (map[string]string, func(string) string, error) {
	settings := map[string]string{"FUNCTIONS_WORKER_RUNTIME": "custom"}
	file := cfg.SettingsFile
	if file == "" {
		file = filepath.Join(cfg.Repo, "local", "local.settings.json")
		if _, err := os.Stat(file); err != nil {
			file = filepath.Join(cfg.Repo, "local", "local.settings.template.json")
		}
	}
	if vals, err := funchost.LoadLocalSettings(file); err == nil {
		for k, v := range vals {
			settings[k] = cmp.Or(cfg.Getenv(k), v)
		}
	} else if cfg.SettingsFile != "" || !errors.Is(err, os.ErrNotExist) {
		return nil, nil, fmt.Errorf("settings: %w", err)
	}
	getenv := func(k string) string {
		if v, ok := settings[k]; ok {
			return v
		}
		return cfg.Getenv(k)
	}
	if getenv(storage.SettingStorage) == "" && getenv(storage.SettingAccountName) == "" && getenv(storage.SettingQueueServiceURI) == "" {
		settings[storage.SettingStorage] = devStorageDefault
	}
	// The handler inherits the process environment; pass the storage settings explicitly
	// too, so settings that came from elsewhere (tests, defaults) reach it.
	for _, k := range []string{storage.SettingStorage, storage.SettingAccountName, storage.SettingQueueServiceURI,
		storage.SettingBlobServiceURI, storage.SettingCredential, storage.SettingClientID, storage.SettingNamePrefix} {
		if v := getenv(k); v != "" {
			settings[k] = v
		}
	}
	return settings, getenv, nil
}

// devStorage makes sure the storage answers — starting Azurite on loopback ports when it
// does not — and creates the queues and containers. The returned function stops the
// Azurite it started (if any).
func devStorage(ctx context.Context, cfg devConfig, info *devInfo, stateDir string) (func(), error) {
	clients := info.Clients
	stop := func() {}
	queueURL, blobURL := clients.QueueURL, clients.BlobURL
	if !reachable(queueURL) || !reachable(blobURL) {
		ports, ok := loopbackPorts(queueURL, blobURL)
		if !ok {
			return stop, fmt.Errorf("storage at %s is not reachable and is not a loopback endpoint, so dev will not start Azurite for it", queueURL)
		}
		if cfg.NoAzurite {
			return stop, fmt.Errorf("storage at %s is not reachable (--no-azurite)", queueURL)
		}
		s, pid, err := startAzurite(ctx, cfg, filepath.Join(stateDir, "azurite"), ports)
		if err != nil {
			return stop, err
		}
		info.AzuritePID = pid
		stop = s
	}
	ectx, cancel := context.WithTimeout(ctx, time.Minute)
	err := clients.Ensure(ectx)
	cancel()
	if err != nil {
		return stop, fmt.Errorf("create queues and containers: %w", err)
	}
	return stop, nil
}

func printDevSummary(cfg devConfig, info *devInfo, h *funchost.Host) {
	w := cfg.Out
	c := info.Clients
	fmt.Fprintln(w, "nightshift dev: the pipeline runs locally. Ctrl-C stops it.")
	if info.AzuritePID != 0 {
		fmt.Fprintf(w, "  Azurite:     pid %d, data in %s\n", info.AzuritePID, filepath.Join(filepath.Dir(info.AppDir), "azurite"))
	}
	fmt.Fprintf(w, "  Queue:       %s\n  Blob:        %s\n", displayURL(c.QueueURL), displayURL(c.BlobURL))
	fmt.Fprintf(w, "  Queues:      %s\n  Containers:  %s\n", strings.Join(c.Layout.Queues(), ", "), strings.Join(c.Layout.Containers(), ", "))
	fmt.Fprintf(w, "  App folder:  %s (host id %s)\n", info.AppDir, h.HostID())
	var fns, https []string
	for _, fn := range h.Functions() {
		fns = append(fns, fn.Name)
		if strings.EqualFold(fn.Trigger.Type, "httpTrigger") {
			https = append(https, fn.Name)
		}
	}
	fmt.Fprintf(w, "  Functions:   %s\n", strings.Join(fns, ", "))
	if len(https) > 0 {
		fmt.Fprintf(w, "  HTTP:        http://%s/%s/  (key: x-functions-key: %s; set %s to choose it)\n", cfg.HTTPAddr, h.Config().RoutePrefix, h.FunctionKey(), funchost.SettingFunctionKey)
	}
	if info.UIURL != "" {
		fmt.Fprintf(w, "  Dashboard:   %s\n", info.UIURL)
	}
	fmt.Fprintln(w, "Enqueue a sample job from another terminal:")
	env := "AzureWebJobsStorage=" + devStorageDefault
	if p := c.Layout.Prefix(); p != "" {
		env += " " + storage.SettingNamePrefix + "=" + p
	}
	fmt.Fprintf(w, "  export %s\n  go run ./cmd/nightshift enqueue http_fetch --args '{\"url\":\"https://example.com\"}'\n  go run ./cmd/nightshift wait <job id>\n", env)
	if len(https) > 0 {
		fmt.Fprintf(w, "  curl -s -X POST -H 'x-functions-key: %s' -H 'Content-Type: application/json' \\\n    -d '{\"kind\":\"http_fetch\",\"args\":{\"url\":\"https://example.com\"}}' http://%s/api/jobs\n", h.FunctionKey(), cfg.HTTPAddr)
	}
}

// reachable reports whether a TCP connection to the URL's host opens within a second.
func reachable(raw string) bool {
	u, err := url.Parse(raw)
	if err != nil {
		return false
	}
	host := u.Host
	if u.Port() == "" {
		host = net.JoinHostPort(u.Hostname(), map[string]string{"http": "80", "https": "443"}[u.Scheme])
	}
	conn, err := net.DialTimeout("tcp", host, time.Second)
	if err != nil {
		return false
	}
	conn.Close()
	return true
}

// azuritePorts are the loopback ports Azurite must listen on to match the settings.
type azuritePorts struct{ queue, blob string }

func loopbackPorts(queueURL, blobURL string) (azuritePorts, bool) {
	q, err1 := url.Parse(queueURL)
	b, err2 := url.Parse(blobURL)
	if err1 != nil || err2 != nil || q.Port() == "" || b.Port() == "" {
		return azuritePorts{}, false
	}
	for _, h := range []string{q.Hostname(), b.Hostname()} {
		if h != "127.0.0.1" && h != "localhost" {
			return azuritePorts{}, false
		}
	}
	return azuritePorts{queue: q.Port(), blob: b.Port()}, true
}

// startAzurite installs the pinned Azurite if needed and starts it with a disk location
// (in-memory mode stalls under sustained churn; see docs/benchmarks.md). It returns a
// function that stops exactly that process.
func startAzurite(ctx context.Context, cfg devConfig, location string, ports azuritePorts) (func(), int, error) {
	local := filepath.Join(cfg.Repo, "local")
	bin := filepath.Join(local, "node_modules", ".bin", "azurite")
	if _, err := os.Stat(bin); err != nil {
		fmt.Fprintln(cfg.Out, "Installing the pinned Azurite (npm ci --prefix local) …")
		npm := exec.CommandContext(ctx, "npm", "ci", "--prefix", local, "--no-audit", "--no-fund")
		npm.Stdout, npm.Stderr = cfg.Out, cfg.Out
		if err := npm.Run(); err != nil {
			return nil, 0, fmt.Errorf("npm ci --prefix local: %w (Node.js 20+ with npm is needed for Azurite)", err)
		}
	}
	if err := os.MkdirAll(location, 0o755); err != nil {
		return nil, 0, err
	}
	logFile, err := os.Create(filepath.Join(location, "azurite.log"))
	if err != nil {
		return nil, 0, err
	}
	cmd := exec.Command(bin, "--location", location,
		"--blobHost", "127.0.0.1", "--blobPort", ports.blob,
		"--queueHost", "127.0.0.1", "--queuePort", ports.queue,
		"--tableHost", "127.0.0.1", "--tablePort", "0",
		"--skipApiVersionCheck", "--disableTelemetry", "--silent")
	cmd.Stdout, cmd.Stderr = logFile, logFile
	proc.DieWithParent(cmd) // a killed `dev` leaves no Azurite behind
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return nil, 0, fmt.Errorf("start Azurite: %w", err)
	}
	pid := cmd.Process.Pid
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); logFile.Close(); close(exited) }()
	stop := func() {
		// Stop exactly the process we started (the azurite bin is node itself, no shell).
		if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
			_ = cmd.Process.Kill() // Windows has no SIGTERM
		}
		select {
		case <-exited:
		case <-time.After(5 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		if reachable("http://127.0.0.1:"+ports.queue) && reachable("http://127.0.0.1:"+ports.blob) {
			fmt.Fprintf(cfg.Out, "Started Azurite (pid %d) on 127.0.0.1:%s (blob) and :%s (queue), data in %s\n", pid, ports.blob, ports.queue, location)
			return stop, pid, nil
		}
		select {
		case <-exited:
			return nil, 0, fmt.Errorf("azurite exited during start-up; see %s", logFile.Name())
		case <-ctx.Done():
			stop()
			return nil, 0, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			stop()
			return nil, 0, errors.New("Azurite did not listen within 30 s; see " + logFile.Name())
		}
	}
}

// displayURL is a service URL fit to print: without its query, which holds the SAS
// (sig=…) when the connection string has one.
func displayURL(u string) string {
	p, err := url.Parse(u)
	if err != nil {
		return "(unprintable URL)"
	}
	if p.RawQuery != "" {
		p.RawQuery = ""
		return p.String() + " (SAS not shown)"
	}
	return p.String()
}
