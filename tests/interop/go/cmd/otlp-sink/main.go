// otlp-sink is an OTLP/gRPC trace collector that keeps nothing: it answers every
// TraceService/Export at once and counts the spans, so that bench/run can measure what
// tracing costs the traced server and not what a real collector costs the machine. It prints
// "LISTENING <port>" once it serves, and "SPANS <n>" when it stops (SIGTERM, or stdin closed).
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"sync/atomic"
	"syscall"

	collector "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/grpc"
)

var port = flag.Int("port", 0, "port to listen on, on 127.0.0.1 (0: any free one)")

type sink struct {
	collector.UnimplementedTraceServiceServer
	spans atomic.Int64
}

func (s *sink) Export(_ context.Context, req *collector.ExportTraceServiceRequest) (*collector.ExportTraceServiceResponse, error) {
	for _, rs := range req.GetResourceSpans() {
		for _, ss := range rs.GetScopeSpans() {
			s.spans.Add(int64(len(ss.GetSpans())))
		}
	}
	return &collector.ExportTraceServiceResponse{}, nil
}

func main() {
	flag.Parse()
	lis, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", *port))
	if err != nil {
		fmt.Fprintf(os.Stderr, "otlp-sink: %v\n", err)
		os.Exit(1)
	}
	s := &sink{}
	srv := grpc.NewServer(grpc.MaxRecvMsgSize(64 << 20))
	collector.RegisterTraceServiceServer(srv, s)
	fmt.Printf("LISTENING %d\n", lis.Addr().(*net.TCPAddr).Port)
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
	go func() {
		_, _ = io.Copy(io.Discard, os.Stdin)
		stop <- syscall.SIGTERM
	}()
	go func() {
		<-stop
		srv.Stop()
	}()
	_ = srv.Serve(lis)
	fmt.Printf("SPANS %d\n", s.spans.Load())
}
