// Package tui is the Bubble Tea app behind `kubectl netpol watch`: a flows
// table, allow/deny rates over time, a namespace × namespace matrix and a
// plain-language explanation of the selected flow.
//
// Structure (as soft-serve and gh-dash): components under components/ each
// own a Model, a key map and SetSize; the root Model handles its messages,
// delegates the rest and batches commands; a state enum drives View. Flows
// arrive from a flow.Source as BatchMsg; redraws caused by data are paced to
// FPS, and every store is bounded (the table's ring, the stats window).
package tui
