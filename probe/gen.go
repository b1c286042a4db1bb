//go:build linux

package probe

//go:generate go tool bpf2go -cc clang-14 -strip llvm-strip-14 -target bpfel -tags linux -type netpol_event -type netpol_tuple -type netpol_policy_key -type netpol_policy_value -type netpol_rule_key -type netpol_rule_value -type netpol_host_value -type netpol_flow_key -type netpol_port_range -type netpol_flow_end -type netpol_agg_new_key -type netpol_agg_new_value -type netpol_agg_end_key -type netpol_agg_counts -output-stem netpol netpol netpol.c -- -O2 -g -Wall -Werror
