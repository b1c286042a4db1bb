// Package snapshot gathers what NetworkPolicy evaluation needs — namespaces,
// pods, policies, nodes, and the workloads that own pods — from manifest files
// (YAML or JSON, multi-document, v1 Lists) or from a live cluster through
// client-go, into one Set. It reports malformed input with the file and line,
// and API failures with the context and server tried. It knows nothing about
// policy semantics: the Set is handed to the policy engine as a Snapshot.
package snapshot
