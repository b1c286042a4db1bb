package kubeclient

import (
	"testing"

	"k8s.io/client-go/rest"
)

func TestProtobufLeavesTheGivenConfig(t *testing.T) {
	rc := &rest.Config{Host: "https://example.invalid", QPS: 7}
	pb := Protobuf(rc)
	if pb.ContentType != "application/vnd.kubernetes.protobuf" || pb.QPS != 7 || pb.Host != rc.Host {
		t.Fatalf("Protobuf(rc) = %+v", pb)
	}
	if rc.ContentType != "" || rc.AcceptContentTypes != "" {
		t.Fatalf("the given config changed: %+v", rc)
	}
}
