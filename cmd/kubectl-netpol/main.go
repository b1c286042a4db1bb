// Command kubectl-netpol is the kubectl plugin: `kubectl netpol ...`.
// It only wires the command tree to the process; every verb lives in internal/cli.
package main

import (
	"os"

	"github.com/kubectl-netpol/kubectl-netpol/internal/cli"
)

func main() {
	os.Exit(cli.Execute())
}
