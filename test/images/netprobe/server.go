package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"
)

// server answers probes on every configured port until its context ends.
type server struct {
	id     string
	logger *log.Logger
}

// reply is what every TCP, UDP and SCTP probe gets back.
func (s *server) reply() []byte { return []byte("pong " + s.id + "\n") }

func (s *server) serve(ctx context.Context, ports map[string][]int) error {
	var closers []func()
	var wg sync.WaitGroup
	run := func(f func()) { wg.Add(1); go func() { defer wg.Done(); f() }() }
	listening := 0
	for _, p := range ports["tcp"] {
		l, err := net.Listen("tcp", ":"+strconv.Itoa(p))
		if err != nil {
			return fmt.Errorf("tcp port %d: %w", p, err)
		}
		closers = append(closers, func() { l.Close() })
		run(func() { s.acceptLoop(l, "tcp") })
		listening++
	}
	for _, p := range ports["udp"] {
		c, err := net.ListenPacket("udp", ":"+strconv.Itoa(p))
		if err != nil {
			return fmt.Errorf("udp port %d: %w", p, err)
		}
		closers = append(closers, func() { c.Close() })
		run(func() { s.udpLoop(c) })
		listening++
	}
	for _, p := range ports["sctp"] {
		l, err := listenSCTP(p)
		if err != nil {
			// Fail soft: the TCP/UDP listeners are still useful without SCTP.
			s.logger.Printf("sctp port %d: not listening: %v", p, err)
			continue
		}
		closers = append(closers, func() { l.Close() })
		run(func() { s.acceptLoop(l, "sctp") })
		listening++
	}
	for _, p := range ports["http"] {
		mux := http.NewServeMux()
		mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
		mux.HandleFunc("/", func(w http.ResponseWriter, _ *http.Request) { w.Write(s.reply()) })
		hs := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
		l, err := net.Listen("tcp", ":"+strconv.Itoa(p))
		if err != nil {
			return fmt.Errorf("http port %d: %w", p, err)
		}
		closers = append(closers, func() { hs.Close() })
		run(func() { hs.Serve(l) })
		listening++
	}
	if listening == 0 {
		return errors.New("no port to listen on")
	}
	s.logger.Printf("%s listening: tcp %v udp %v sctp %v http %v", s.id, ports["tcp"], ports["udp"], ports["sctp"], ports["http"])
	<-ctx.Done()
	for _, c := range closers {
		c()
	}
	wg.Wait()
	return nil
}

// acceptLoop answers each line of a stream connection with the reply.
func (s *server) acceptLoop(l net.Listener, proto string) {
	for {
		c, err := l.Accept()
		if err != nil {
			if !errors.Is(err, net.ErrClosed) {
				s.logger.Printf("%s accept: %v", proto, err)
			}
			return
		}
		go func() {
			defer c.Close()
			// Every line gets the reply, so a client may keep one connection
			// open (connect -keep) to check that it survives; idle ones end.
			r := bufio.NewReader(c)
			for {
				c.SetDeadline(time.Now().Add(5 * time.Second))
				if _, err := r.ReadString('\n'); err != nil {
					return
				}
				if _, err := c.Write(s.reply()); err != nil {
					return
				}
			}
		}()
	}
}

// udpLoop answers every datagram with the reply.
func (s *server) udpLoop(c net.PacketConn) {
	buf := make([]byte, 1500)
	for {
		_, addr, err := c.ReadFrom(buf)
		if err != nil {
			if !errors.Is(err, net.ErrClosed) {
				s.logger.Printf("udp read: %v", err)
			}
			return
		}
		c.WriteTo(s.reply(), addr)
	}
}
