// Package history keeps an aggregated history of judged connections: one
// record per connection key (workload pair, Service, protocol and port,
// verdict, deciding policies and rules, judging node) and time bucket, with
// connection, packet and byte counts and first/last seen. Memory follows the
// number of distinct keys, not of connections: recording a flow is a map
// lookup and a few additions.
//
// The agent records every flow it publishes into a Store, which coarsens old
// buckets (10 minutes, then hours, then days), stays within a memory and a
// disk budget (coarsening before dropping, both counted), and persists itself
// to one file under a directory the agent owns so history survives restarts
// and upgrades. The CLI reads it through flow.v1 History (Collect) or builds
// the same records offline from a `watch -o json` capture (FromFlows); what-if
// re-judges the records with package policy. Builds on every OS.
package history
