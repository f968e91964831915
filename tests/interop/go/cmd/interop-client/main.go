// interop-client runs the tutorial client's four calls against a Greeter server and
// checks every reply and status, so it can vouch for a server written in another language.
//
// Exit codes: 0 all OK, 1 a reply differs from the contract (MISMATCH line on stderr),
// 2 an RPC failed (RPC ERROR line with the status), 3 bad local setup (e.g. TLS files).
package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	pb "greeter-interop/proto"
)

var (
	addr       = flag.String("addr", "localhost:50051", "server address host:port")
	ticks      = flag.Int("ticks", 5, "number of GetStockPrice ticks the server is expected to send")
	timeout    = flag.Duration("timeout", 30*time.Second, "deadline of each call")
	tlsCA      = flag.String("tls-ca", "", "PEM CA that signs the server certificate (empty: plaintext)")
	tlsCert    = flag.String("tls-cert", "", "PEM client certificate for mutual TLS")
	tlsKey     = flag.String("tls-key", "", "PEM client key for mutual TLS")
	tlsSrvName = flag.String("tls-server-name", "", "expected server name in its certificate (default: host of --addr)")
	token      = flag.String("token", "", "bearer token sent with every call (authorization: Bearer ...)")
)

func mismatch(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "MISMATCH "+format+"\n", args...)
	os.Exit(1)
}

func rpcErr(call string, err error) {
	st := status.Convert(err)
	fmt.Fprintf(os.Stderr, "RPC ERROR %s: code=%d (%s) message=%q\n", call, int(st.Code()), st.Code(), st.Message())
	os.Exit(2)
}

func transportCreds() (credentials.TransportCredentials, error) {
	if *tlsCA == "" {
		return insecure.NewCredentials(), nil
	}
	pem, err := os.ReadFile(*tlsCA)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("no certificate found in %s", *tlsCA)
	}
	cfg := &tls.Config{RootCAs: pool, ServerName: *tlsSrvName}
	if *tlsCert != "" || *tlsKey != "" {
		pair, err := tls.LoadX509KeyPair(*tlsCert, *tlsKey)
		if err != nil {
			return nil, err
		}
		cfg.Certificates = []tls.Certificate{pair}
	}
	return credentials.NewTLS(cfg), nil
}

func callCtx() (context.Context, context.CancelFunc) {
	ctx := context.Background()
	if *token != "" {
		ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+*token)
	}
	return context.WithTimeout(ctx, *timeout)
}

func main() {
	flag.Parse()
	creds, err := transportCreds()
	if err != nil {
		fmt.Fprintf(os.Stderr, "SETUP ERROR TLS: %v\n", err)
		os.Exit(3)
	}
	conn, err := grpc.NewClient(*addr, grpc.WithTransportCredentials(creds))
	if err != nil {
		fmt.Fprintf(os.Stderr, "SETUP ERROR NewClient: %v\n", err)
		os.Exit(3)
	}
	defer conn.Close()
	c := pb.NewGreeterClient(conn)

	unary(c)
	serverStreaming(c)
	clientStreaming(c)
	chat(c)
	fmt.Println("OK all four patterns")
}

func unary(c pb.GreeterClient) {
	fmt.Println("--- 1. Unary ---")
	ctx, cancel := callCtx()
	defer cancel()
	r, err := c.SayHello(ctx, &pb.HelloRequest{Name: "Go Client"})
	if err != nil {
		rpcErr("SayHello", err)
	}
	fmt.Printf("Response: %s\n", r.GetMessage())
	if want := "Hello Go Client"; r.GetMessage() != want {
		mismatch("SayHello: want %q, got %q", want, r.GetMessage())
	}
}

func serverStreaming(c pb.GreeterClient) {
	fmt.Println("--- 2. Server Streaming ---")
	ctx, cancel := callCtx()
	defer cancel()
	stream, err := c.GetStockPrice(ctx, &pb.StockRequest{Symbol: "TSMC"})
	if err != nil {
		rpcErr("GetStockPrice", err)
	}
	n := 0
	for {
		res, err := stream.Recv()
		if err == io.EOF {
			break
		}
		if err != nil {
			rpcErr("GetStockPrice", err)
		}
		n++
		fmt.Printf("Stock: %s, Price: %.2f\n", res.GetSymbol(), res.GetPrice())
		if res.GetSymbol() != "TSMC" {
			mismatch("GetStockPrice tick %d: want symbol %q, got %q", n, "TSMC", res.GetSymbol())
		}
		if p := res.GetPrice(); !(p >= 500 && p < 600) {
			mismatch("GetStockPrice tick %d: want price in [500,600), got %v", n, p)
		}
	}
	if n != *ticks {
		mismatch("GetStockPrice: want %d ticks, got %d", *ticks, n)
	}
}

func clientStreaming(c pb.GreeterClient) {
	fmt.Println("--- 3. Client Streaming ---")
	ctx, cancel := callCtx()
	defer cancel()
	values := []float64{25.5, 26.8, 27.1}
	stream, err := c.RecordMetrics(ctx)
	if err != nil {
		rpcErr("RecordMetrics", err)
	}
	for _, v := range values {
		// A Send error only means the stream is broken; the real status comes from CloseAndRecv.
		if err := stream.Send(&pb.Metric{Value: v}); err != nil {
			break
		}
	}
	summary, err := stream.CloseAndRecv()
	if err != nil {
		rpcErr("RecordMetrics", err)
	}
	fmt.Printf("Statistics: Count %d, Average %.2f\n", summary.GetCount(), summary.GetAverage())
	if summary.GetCount() != int32(len(values)) {
		mismatch("RecordMetrics: want count %d, got %d", len(values), summary.GetCount())
	}
	mean := (values[0] + values[1] + values[2]) / 3
	if math.Abs(summary.GetAverage()-mean) > 1e-9 || math.IsNaN(summary.GetAverage()) {
		mismatch("RecordMetrics: want average %v (±1e-9), got %v", mean, summary.GetAverage())
	}
}

// chat sends one message at a time and waits for its answer (ping-pong), which also
// proves the server replies per message instead of only after the client half-closes.
func chat(c pb.GreeterClient) {
	fmt.Println("--- 4. Chat ---")
	ctx, cancel := callCtx()
	defer cancel()
	stream, err := c.Chat(ctx)
	if err != nil {
		rpcErr("Chat", err)
	}
	for i, msg := range []string{"Hello", "Bye"} {
		if err := stream.Send(&pb.ChatMessage{User: "Go", Message: msg}); err != nil && !errors.Is(err, io.EOF) {
			rpcErr("Chat", err)
		}
		in, err := stream.Recv()
		if err == io.EOF {
			mismatch("Chat: want reply %d to %q, got end of stream", i+1, msg)
		}
		if err != nil {
			rpcErr("Chat", err)
		}
		fmt.Printf("(Receive) %s: %s\n", in.GetUser(), in.GetMessage())
		if want := "Server received: " + msg; in.GetUser() != "Server" || in.GetMessage() != want {
			mismatch("Chat reply %d: want (%q, %q), got (%q, %q)", i+1, "Server", want, in.GetUser(), in.GetMessage())
		}
	}
	if err := stream.CloseSend(); err != nil {
		rpcErr("Chat", err)
	}
	in, err := stream.Recv()
	if err == nil {
		mismatch("Chat: want end of stream after 2 replies, got extra (%q, %q)", in.GetUser(), in.GetMessage())
	}
	if err != io.EOF {
		rpcErr("Chat", err)
	}
}
