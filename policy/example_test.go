package policy_test

import (
	"fmt"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"

	"github.com/kubectl-netpol/kubectl-netpol/policy"
	. "github.com/kubectl-netpol/kubectl-netpol/policy/policytest"
)

// A denial explained: the destination's ingress side names the selecting
// policy and why its only rule did not match.
func ExampleEngine_Evaluate() {
	frontend := Pod("web", "frontend-1", WithLabels("app=web"), WithIP("10.1.0.1"))
	mysql := Pod("db", "mysql-0", WithLabels("app=db"), WithIP("10.2.0.1"), WithPort("mysql", 3306, ""))
	e, err := policy.NewEngine(&policy.Snapshot{
		Pods: []*corev1.Pod{frontend, mysql},
		Policies: []*networkingv1.NetworkPolicy{
			Policy("db", "db-policy", Selecting(Sel("app=db")),
				IngressRule(Peers(PodPeer(Sel("app=web"))), NamedPort("mysql", ""))),
		},
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	d := e.Evaluate(policy.Traffic{Src: policy.Peer{Pod: frontend}, Dst: policy.Peer{Pod: mysql}, Port: 3306})
	fmt.Println("allowed:", d.Allowed)
	fmt.Println("egress:", d.Egress.Reason)
	fmt.Println("ingress:", d.Ingress.Reason)
	for _, pe := range d.Ingress.Policies {
		fmt.Println(" ", pe.Summary)
		for _, r := range pe.Rules {
			for _, m := range r.Mismatches {
				fmt.Printf("    rule %d, %s %d: %s\n", r.Rule.Index, m.Kind, m.Index, m.Message)
			}
		}
	}
	fmt.Println("fast path agrees:", e.Allowed(policy.Traffic{Src: policy.Peer{Pod: frontend}, Dst: policy.Peer{Pod: mysql}, Port: 3306}) == d.Allowed)
	// Output:
	// allowed: false
	// egress: NotIsolated
	// ingress: NoRuleMatched
	//   db/db-policy selects pod db/mysql-0 (podSelector app=db) for Ingress; its only ingress rule does not match
	//     rule 0, Peer 0: pod web/frontend-1 is in namespace "web"; peer 0 selects pods app=web in namespace "db" (podSelector alone means the policy's own namespace)
	// fast path agrees: true
}
