package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/nightshift-jobs/nightshift"
	"github.com/nightshift-jobs/nightshift/storage"
	"github.com/nightshift-jobs/nightshift/ui"
)

func init() { subcommands = append(subcommands, newUICmd) }

// SettingUIToken is the setting that gives the dashboard's token (--token wins).
const SettingUIToken = "NIGHTSHIFT_UI_TOKEN"

// defaultUIAddr is where `nightshift ui` listens unless --addr says otherwise.
const defaultUIAddr = "127.0.0.1:7072"

// uiConfig is what `nightshift ui` runs with.
type uiConfig struct {
	Addr   string
	Token  string
	JSON   bool
	Getenv func(string) string
	Out    io.Writer
	Err    io.Writer
	// Ready, when set, is called with the dashboard's login URL once it listens (tests).
	Ready func(loginURL string)
}

func newUICmd() *cobra.Command {
	var addr, token string
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "ui",
		Short: "Serve the web dashboard against the configured storage account",
		Long: `ui serves nightshift's web dashboard (queues, jobs, dead letters, batches, schedules)
against the storage the settings name: AzureWebJobsStorage (a connection string, or
UseDevelopmentStorage=true) or the identity-based AzureWebJobsStorage__accountName with
AzureWebJobsStorage__credential (an Entra identity: az login, a managed identity, workload
identity). It listens on 127.0.0.1:7072 (--addr to change; a non-loopback address is
reachable from elsewhere, so put TLS in front of it).

Opening it takes a token: --token, else the NIGHTSHIFT_UI_TOKEN setting, else a new random
one. ui prints the URL with the token; opening it exchanges the token for a session cookie.
--json prints {"url", "addr", "token_generated"} as one JSON line instead.

Ctrl-C stops it. Exit codes: 0 after Ctrl-C, 1 when storage settings are wrong or the
address cannot be listened on, 2 for a usage error. See docs/dashboard.md.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runUI(cmd.Context(), uiConfig{Addr: addr, Token: token, JSON: asJSON, Getenv: os.Getenv, Out: cmd.OutOrStdout(), Err: cmd.ErrOrStderr()})
		},
	}
	cmd.Flags().StringVar(&addr, "addr", defaultUIAddr, "address to listen on (host:port; port 0 picks a free one)")
	cmd.Flags().StringVar(&token, "token", "", "token that opens the dashboard (default the "+SettingUIToken+" setting, else a new random one)")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the URL as a JSON line")
	return cmd
}

// uiOptions are the dashboard's options for the storage the settings name: the shipped
// recurring jobs, the settings' key and SAS as secrets never to show, and the limits of
// NIGHTSHIFT_LIMITS for the flow page.
func uiOptions(getenv func(string) string, token string, log *slog.Logger) ui.Options {
	return ui.Options{Token: token, Recurring: shippedRecurring(), Getenv: getenv, Secrets: settingSecrets(getenv), Logger: log,
		Limits: func() map[string]nightshift.Limits {
			m, _ := nightshift.ParseLimits(getenv(nightshift.SettingLimits)) // `nightshift limits` reports a bad setting
			return m
		}}
}

func runUI(ctx context.Context, cfg uiConfig) error {
	if _, _, err := net.SplitHostPort(cfg.Addr); err != nil {
		return usageError{fmt.Errorf("--addr %q: %w", cfg.Addr, err)}
	}
	store, err := storage.FromEnv(cfg.Getenv, nil)
	if err != nil {
		return fmt.Errorf("storage settings: %w", err)
	}
	token, generated := cfg.Token, false
	if token == "" {
		token = cfg.Getenv(SettingUIToken)
	}
	if token == "" {
		token, generated = ui.NewToken(), true
	}
	log := slog.New(slog.NewTextHandler(cfg.Err, &slog.HandlerOptions{Level: slog.LevelWarn}))
	h := ui.Handler(nightshift.NewClient(store, nil), uiOptions(cfg.Getenv, token, log))
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", cfg.Addr, err)
	}
	addr := ln.Addr().String()
	login := "http://" + addr + "/login?token=" + url.QueryEscape(token)
	if cfg.JSON {
		if err := printJSON(cfg.Out, map[string]any{"url": login, "addr": addr, "token_generated": generated}); err != nil {
			ln.Close()
			return err
		}
	} else {
		fmt.Fprintf(cfg.Out, "nightshift ui: the dashboard is at %s\n  open: %s\nCtrl-C stops it.\n", "http://"+addr+"/", login)
	}
	if !isLoopback(addr) {
		fmt.Fprintf(cfg.Err, "nightshift ui: warning: %s is not a loopback address; anyone who reaches it and has the token can cancel and replay jobs, over plain HTTP\n", addr)
	}
	if cfg.Ready != nil {
		cfg.Ready(login)
	}
	return serveUntilDone(ctx, ln, h)
}

// serveUntilDone serves h on ln until ctx ends, then shuts the server down.
func serveUntilDone(ctx context.Context, ln net.Listener, h http.Handler) error {
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	select {
	case err := <-done:
		return fmt.Errorf("dashboard server: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	return nil
}

// isLoopback reports whether addr's host is a loopback address (or localhost).
func isLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// settingSecrets returns the account key and SAS of the storage connection string, which
// the dashboard must never show.
func settingSecrets(getenv func(string) string) []string {
	return ui.ConnectionSecrets(getenv(storage.SettingStorage))
}

// startDevUI serves the dashboard for `nightshift dev` on addr until ctx ends and returns
// its login URL ("" when addr is empty or cannot be listened on: dev runs on without it).
func startDevUI(ctx context.Context, cfg devConfig, store *storage.Clients, getenv func(string) string) string {
	if cfg.UIAddr == "" {
		return ""
	}
	ln, err := net.Listen("tcp", cfg.UIAddr)
	if err != nil {
		fmt.Fprintf(cfg.Out, "The dashboard did not start (listen on %s: %v); --ui chooses another address\n", cfg.UIAddr, err)
		return ""
	}
	token := getenv(SettingUIToken)
	if token == "" {
		token = ui.NewToken()
	}
	h := ui.Handler(nightshift.NewClient(store, nil), uiOptions(getenv, token, cfg.Log))
	go func() { _ = serveUntilDone(ctx, ln, h) }()
	return "http://" + ln.Addr().String() + "/login?token=" + url.QueryEscape(token)
}
