// Package flow is the client- and server-side logic around the flow.v1 API
// (package flowv1): compiled filters with `hubble observe` semantics that the
// agent applies at the source and the CLI re-applies to replays, the printers
// behind `watch -o compact|json`, the JSON-lines reader behind --input-file,
// and Source, the interface every producer of flow batches implements (a file
// replay today; the port-forwarded agents later). It builds on every OS.
package flow
