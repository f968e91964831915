// interop-server is the tutorial's Go server (server/main.go) made testable: free port,
// configurable stream pacing, optional TLS, a "LISTENING <port>" line, graceful shutdown.
package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"flag"
	"fmt"
	"io"
	"log"
	"math"
	"math/rand"
	"net"
	"os"
	"os/signal"
	"strconv"
	"sync"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	_ "google.golang.org/grpc/encoding/gzip" // inflates gzip requests, and answers them in gzip
	"google.golang.org/grpc/stats"
	"google.golang.org/grpc/status"

	pb "greeter-interop/proto"
)

var (
	host        = flag.String("host", "127.0.0.1", "address to listen on")
	port        = flag.Int("port", 0, "port to listen on (0: pick a free one)")
	ticks       = flag.Int("ticks", 5, "ticks sent per GetStockPrice call")
	interval    = flag.Duration("interval", 500*time.Millisecond, "pause between two ticks")
	tlsCert     = flag.String("tls-cert", "", "PEM server certificate (with --tls-key enables TLS)")
	tlsKey      = flag.String("tls-key", "", "PEM server key")
	tlsClientCA = flag.String("tls-client-ca", "", "PEM CA; when set, clients must present a certificate it signed")
	wireLogPath = flag.String("wire-log", "", "append a line per request message received to this file: METHOD compressed|plain LENGTH")
)

// wireLog records how each request message crossed the wire, which user code cannot see in
// grpc-go: stats.InPayload's CompressedLength is the frame's length prefix as received, and
// equals Length exactly when the frame was sent uncompressed (grpc-go hands the very buffer
// on); for the compressible messages the tests send, gzip output is always shorter.
type wireLog struct {
	mu  sync.Mutex
	out *os.File
}

type methodKey struct{}

func (w *wireLog) TagRPC(ctx context.Context, info *stats.RPCTagInfo) context.Context {
	return context.WithValue(ctx, methodKey{}, info.FullMethodName)
}

func (w *wireLog) HandleRPC(ctx context.Context, s stats.RPCStats) {
	in, ok := s.(*stats.InPayload)
	if !ok {
		return
	}
	state := "plain"
	if in.CompressedLength != in.Length {
		state = "compressed"
	}
	method, _ := ctx.Value(methodKey{}).(string)
	w.mu.Lock()
	defer w.mu.Unlock()
	fmt.Fprintf(w.out, "%s %s %d\n", method, state, in.Length)
}

func (w *wireLog) TagConn(ctx context.Context, _ *stats.ConnTagInfo) context.Context { return ctx }
func (w *wireLog) HandleConn(context.Context, stats.ConnStats)                       {}

type server struct {
	pb.UnimplementedGreeterServer
}

func (s *server) SayHello(ctx context.Context, req *pb.HelloRequest) (*pb.HelloReply, error) {
	return &pb.HelloReply{Message: "Hello " + req.GetName()}, nil
}

func (s *server) GetStockPrice(req *pb.StockRequest, stream pb.Greeter_GetStockPriceServer) error {
	log.Printf("Received subscription: %v", req.GetSymbol())
	for i := 0; i < *ticks; i++ {
		if i > 0 {
			select { // stop pacing as soon as the client goes away
			case <-time.After(*interval):
			case <-stream.Context().Done():
				return status.FromContextError(stream.Context().Err()).Err()
			}
		}
		price := 500.0 + rand.Float64()*100
		if err := stream.Send(&pb.StockReply{Symbol: req.GetSymbol(), Price: price}); err != nil {
			return err
		}
	}
	return nil
}

func (s *server) RecordMetrics(stream pb.Greeter_RecordMetricsServer) error {
	var sum float64
	var count int32
	for {
		req, err := stream.Recv()
		if err == io.EOF {
			average := 0.0
			if count > 0 {
				average = sum / float64(count)
			}
			return stream.SendAndClose(&pb.MetricSummary{Count: count, Average: average})
		}
		if err != nil {
			return err
		}
		// The proto contract (not the tutorial) rejects non-finite readings.
		if v := req.GetValue(); math.IsNaN(v) || math.IsInf(v, 0) {
			return status.Errorf(codes.InvalidArgument, "metric value must be finite, got %v", v)
		}
		sum += req.GetValue()
		count++
	}
}

func (s *server) Chat(stream pb.Greeter_ChatServer) error {
	for {
		in, err := stream.Recv()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		reply := &pb.ChatMessage{User: "Server", Message: "Server received: " + in.GetMessage()}
		if err := stream.Send(reply); err != nil {
			return err
		}
	}
}

func serverOptions() ([]grpc.ServerOption, error) {
	if *tlsCert == "" && *tlsKey == "" {
		return nil, nil
	}
	pair, err := tls.LoadX509KeyPair(*tlsCert, *tlsKey)
	if err != nil {
		return nil, err
	}
	cfg := &tls.Config{Certificates: []tls.Certificate{pair}}
	if *tlsClientCA != "" {
		pem, err := os.ReadFile(*tlsClientCA)
		if err != nil {
			return nil, err
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("no certificate found in %s", *tlsClientCA)
		}
		cfg.ClientCAs = pool
		cfg.ClientAuth = tls.RequireAndVerifyClientCert
	}
	return []grpc.ServerOption{grpc.Creds(credentials.NewTLS(cfg))}, nil
}

func main() {
	flag.Parse()
	opts, err := serverOptions()
	if err != nil {
		log.Fatalf("TLS setup: %v", err)
	}
	lis, err := net.Listen("tcp", net.JoinHostPort(*host, strconv.Itoa(*port)))
	if err != nil {
		log.Fatalf("Failed to listen: %v", err)
	}
	if *wireLogPath != "" {
		out, err := os.OpenFile(*wireLogPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			log.Fatalf("wire log: %v", err)
		}
		opts = append(opts, grpc.StatsHandler(&wireLog{out: out}))
	}
	s := grpc.NewServer(opts...)
	pb.RegisterGreeterServer(s, &server{})

	served := make(chan error, 1)
	go func() { served <- s.Serve(lis) }()
	// The socket already accepts (kernel backlog), so announcing before Serve runs is safe.
	// os.Stdout is unbuffered in Go: the line reaches a pipe immediately.
	fmt.Printf("LISTENING %d\n", lis.Addr().(*net.TCPAddr).Port)

	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	select {
	case err := <-served:
		log.Fatalf("Failed to serve: %v", err)
	case sig := <-sigs:
		log.Printf("%v: shutting down", sig)
	}
	// GracefulStop waits for open streams; do not let a stuck client hold us forever.
	done := make(chan struct{})
	go func() { s.GracefulStop(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		s.Stop()
	}
}
