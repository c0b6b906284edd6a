//go:build tools

// Package tools pins the SeaweedFS server for `llmops infra up`: go.mod requires the version,
// and `go build -o HOME/bin/weed github.com/seaweedfs/seaweedfs/weed` (GOFLAGS=-mod=mod) builds it.
// A wrapper module is needed because `go install ...@latest` refuses modules with replace directives.
package tools

import _ "github.com/seaweedfs/seaweedfs/weed"
