//go:build tools

// Package tools pins the versions of development tools, kept out of the
// product's go.mod so their dependencies never reach users.
package tools

import (
	_ "honnef.co/go/tools/cmd/staticcheck"
)
