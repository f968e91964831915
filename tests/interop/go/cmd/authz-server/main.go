// authz-server is a grpc-go Greeter server (the four methods, health, reflection) behind
// grpc-go's own authorization: authz.NewFileWatcher's unary and stream interceptors on a
// gRFC A43 policy file. The authorization tests send it the calls they send our server and
// compare the answers. Audit lines (A59's stdout logger) go to stdout after "LISTENING <port>".
//
//	authz-server -policy FILE [-refresh 100ms] [-tls-cert F -tls-key F [-tls-client-ca F [-client-cert optional]]]
//	authz-server -describe-cert FILE   prints Go's view of a PEM certificate as JSON and exits
package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/authz"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/reflection"

	pb "greeter-interop/proto"
)

var (
	host         = flag.String("host", "127.0.0.1", "address to listen on")
	port         = flag.Int("port", 0, "port to listen on (0: pick a free one)")
	policy       = flag.String("policy", "", "gRFC A43 authorization policy file (required)")
	refresh      = flag.Duration("refresh", 10*time.Second, "how often the policy file is read again")
	tlsCert      = flag.String("tls-cert", "", "PEM server certificate (with -tls-key enables TLS)")
	tlsKey       = flag.String("tls-key", "", "PEM server key")
	tlsClientCA  = flag.String("tls-client-ca", "", "PEM CA that signs client certificates")
	clientCert   = flag.String("client-cert", "require", "with -tls-client-ca: 'require' a client certificate, or verify it when 'optional'ly given")
	describeCert = flag.String("describe-cert", "", "print Go's names for this PEM certificate as JSON and exit")
)

type server struct {
	pb.UnimplementedGreeterServer
}

func (s *server) SayHello(ctx context.Context, req *pb.HelloRequest) (*pb.HelloReply, error) {
	return &pb.HelloReply{Message: "Hello " + req.GetName()}, nil
}

func (s *server) GetStockPrice(req *pb.StockRequest, stream pb.Greeter_GetStockPriceServer) error {
	for i := 0; i < 2; i++ {
		if err := stream.Send(&pb.StockReply{Symbol: req.GetSymbol(), Price: 500 + float64(i)}); err != nil {
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
		if err := stream.Send(&pb.ChatMessage{User: "Server", Message: "Server received: " + in.GetMessage()}); err != nil {
			return err
		}
	}
}

func credentialsOption() (grpc.ServerOption, error) {
	if *tlsCert == "" && *tlsKey == "" {
		return nil, nil
	}
	pair, err := tls.LoadX509KeyPair(*tlsCert, *tlsKey)
	if err != nil {
		return nil, err
	}
	cfg := &tls.Config{Certificates: []tls.Certificate{pair}}
	if *tlsClientCA != "" {
		pemBytes, err := os.ReadFile(*tlsClientCA)
		if err != nil {
			return nil, err
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pemBytes) {
			return nil, fmt.Errorf("no certificate found in %s", *tlsClientCA)
		}
		cfg.ClientCAs = pool
		switch *clientCert {
		case "require":
			cfg.ClientAuth = tls.RequireAndVerifyClientCert
		case "optional":
			cfg.ClientAuth = tls.VerifyClientCertIfGiven
		default:
			return nil, fmt.Errorf("-client-cert must be 'require' or 'optional', not %q", *clientCert)
		}
	}
	return grpc.Creds(credentials.NewTLS(cfg)), nil
}

// describe prints what grpc-go's RBAC matches a certificate's holder by.
func describe(file string) error {
	pemBytes, err := os.ReadFile(file)
	if err != nil {
		return err
	}
	block, _ := pem.Decode(pemBytes)
	if block == nil {
		return fmt.Errorf("no PEM block in %s", file)
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return err
	}
	uris := []string{}
	for _, u := range cert.URIs {
		uris = append(uris, u.String())
	}
	dns := append([]string{}, cert.DNSNames...)
	return json.NewEncoder(os.Stdout).Encode(map[string]any{"uris": uris, "dns": dns, "subject": cert.Subject.String()})
}

func main() {
	flag.Parse()
	if *describeCert != "" {
		if err := describe(*describeCert); err != nil {
			log.Fatalf("describe-cert: %v", err)
		}
		return
	}
	if *policy == "" {
		log.Fatal("-policy is required")
	}
	// The policy is loaded (or refused) before the server listens, as ours does.
	watcher, err := authz.NewFileWatcher(*policy, *refresh)
	if err != nil {
		fmt.Fprintf(os.Stderr, "POLICY REFUSED: %v\n", err)
		os.Exit(2)
	}
	defer watcher.Close()
	opts := []grpc.ServerOption{
		grpc.ChainUnaryInterceptor(watcher.UnaryInterceptor),
		grpc.ChainStreamInterceptor(watcher.StreamInterceptor),
	}
	creds, err := credentialsOption()
	if err != nil {
		log.Fatalf("TLS setup: %v", err)
	}
	if creds != nil {
		opts = append(opts, creds)
	}
	lis, err := net.Listen("tcp", net.JoinHostPort(*host, strconv.Itoa(*port)))
	if err != nil {
		log.Fatalf("Failed to listen: %v", err)
	}
	s := grpc.NewServer(opts...)
	pb.RegisterGreeterServer(s, &server{})
	healthpb.RegisterHealthServer(s, health.NewServer())
	reflection.Register(s)

	served := make(chan error, 1)
	go func() { served <- s.Serve(lis) }()
	fmt.Printf("LISTENING %d\n", lis.Addr().(*net.TCPAddr).Port)

	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	select {
	case err := <-served:
		log.Fatalf("Failed to serve: %v", err)
	case <-sigs:
	}
	s.Stop()
}
