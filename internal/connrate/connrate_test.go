package connrate

import (
	"net"
	"testing"
	"time"
)

// The client counts the connections it completed (each read the server's
// byte), and its printed count parses back.
func TestClientCountsConnections(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- serveOn(l) }()
	n, err := connect(l.Addr().String(), 100*time.Millisecond)
	if err != nil || n == 0 {
		t.Fatalf("connect: %d connections, %v", n, err)
	}
	l.Close()
	if err := <-served; err == nil {
		t.Error("the server did not stop when its listener closed")
	}
	if _, err := connect(l.Addr().String(), time.Second); err == nil {
		t.Error("connecting to a closed listener succeeded")
	}
	if got, err := Connections([]byte("1234\n")); got != 1234 || err != nil {
		t.Errorf("Connections(1234) = %d, %v", got, err)
	}
	if _, err := Connections([]byte("error: refused\n")); err == nil {
		t.Error("Connections accepted an error line")
	}
}
