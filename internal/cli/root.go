// Package cli implements the `kubectl netpol` command tree: one file per verb,
// each an Options struct with Complete, Validate and Run, writing only through
// genericiooptions.IOStreams so tests can capture every byte.
package cli

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"

	"github.com/spf13/cobra"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"
)

// ExitError carries a process exit code without printing anything more
// (e.g. `check` exits 1 when an expectation fails, after printing results).
type ExitError struct{ Code int }

func (e *ExitError) Error() string { return fmt.Sprintf("exit status %d", e.Code) }

// Execute runs the plugin with the process's streams and returns the exit code.
func Execute() int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	streams := genericiooptions.IOStreams{In: os.Stdin, Out: os.Stdout, ErrOut: os.Stderr}
	cmd := NewCmdNetpol(streams)
	if err := cmd.ExecuteContext(ctx); err != nil {
		var exit *ExitError
		if errors.As(err, &exit) {
			return exit.Code
		}
		fmt.Fprintf(streams.ErrOut, "error: %v\n", err)
		return 1
	}
	return 0
}

// NewCmdNetpol returns the root command with every verb attached.
func NewCmdNetpol(streams genericiooptions.IOStreams) *cobra.Command {
	configFlags := genericclioptions.NewConfigFlags(true)
	cmd := &cobra.Command{
		Use:   "netpol",
		Short: "Enforce, watch and explain Kubernetes NetworkPolicies",
		Long: `kubectl netpol enforces NetworkPolicies with an eBPF agent, shows live
allow/deny verdicts, and explains why one pod can or cannot reach another.`,
		Annotations: map[string]string{
			cobra.CommandDisplayNameAnnotation: "kubectl netpol",
		},
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	configFlags.AddFlags(cmd.PersistentFlags())
	f := NewFactory(configFlags)
	cmd.AddCommand(
		NewCmdExplain(f, streams),
		NewCmdCheck(f, streams),
		NewCmdMatrix(f, streams),
		NewCmdVersion(configFlags, streams),
		NewCmdWatch(configFlags, streams),
		NewCmdInstall(f, streams),
		NewCmdUninstall(f, streams),
		NewCmdStatus(f, streams),
		NewCmdWhatif(f, streams),
		NewCmdUnused(f, streams),
		NewCmdCoverage(f, streams),
		NewCmdAdvise(f, streams),
		NewCmdPromote(f, streams),
	)
	registerFlagCompletion(cmd, f)
	return cmd
}
