// Command nightshift is the nightshift command line: run the pipeline locally (dev),
// enqueue and follow jobs, inspect and replay dead letters, package for deployment.
//
// Every subcommand reads the same storage settings as the handler (AzureWebJobsStorage or
// the identity-based AzureWebJobsStorage__* settings), so it works against Azurite and
// Azure alike. Exit codes: 0 success, 1 failure, 2 usage error; commands that wait on a
// job document their own codes.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/spf13/cobra"
)

// Exit codes shared by every subcommand.
const (
	exitOK      = 0
	exitFailure = 1
	exitUsage   = 2
)

// usageError marks an error caused by how the command was called (exit code 2).
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

// exitError carries a specific exit code (e.g. `wait` on a dead job).
type exitError struct {
	code int
	err  error
}

func (e exitError) Error() string { return e.err.Error() }
func (e exitError) Unwrap() error { return e.err }

// subcommands are added by the files of this package, each in its own init-free
// constructor listed here.
var subcommands []func() *cobra.Command

func newRoot() *cobra.Command {
	root := &cobra.Command{
		Use:           "nightshift",
		Short:         "Background jobs for Go on Azure Functions",
		Long:          "nightshift runs typed Go background jobs from Azure Storage queues under Azure Functions.\nStorage settings come from AzureWebJobsStorage (or the identity-based AzureWebJobsStorage__* settings).",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error { return usageError{err} })
	for _, f := range subcommands {
		root.AddCommand(f())
	}
	return root
}

func run(ctx context.Context, args []string) int {
	root := newRoot()
	root.SetArgs(args)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return exitOK
	}
	msg := err.Error()
	if !strings.HasPrefix(msg, "nightshift:") {
		msg = "nightshift: " + msg
	}
	fmt.Fprintln(os.Stderr, msg)
	var ue usageError
	var ee exitError
	switch {
	case errors.As(err, &ee):
		return ee.code
	case errors.As(err, &ue), isCobraUsage(err):
		return exitUsage
	}
	return exitFailure
}

// isCobraUsage recognises cobra's own argument errors (unknown command, wrong arg count).
func isCobraUsage(err error) bool {
	msg := err.Error()
	for _, p := range []string{"unknown command", "unknown flag", "accepts ", "requires ", "invalid argument"} {
		if strings.Contains(msg, p) {
			return true
		}
	}
	return false
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:])
	stop()
	os.Exit(code)
}
