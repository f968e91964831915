package main

// The cost of grpc-go's authorization check per call, for the side-by-side table of
// examples/authz_bench.rs:
//
//	go test -run '^$' -bench Authz ./cmd/authz-server
//
// A real call over mutual TLS is held in the server's interceptor while the benchmark runs
// grpc-go's authz interceptor on that call's context b.N times: what is timed is exactly the
// check grpc-go makes per call (reading the call's metadata, peer and method, then the deny
// and allow engines), not the transport.

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"fmt"
	"math/big"
	"net"
	"net/url"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/authz"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"

	pb "greeter-interop/proto"
)

// benchPolicy is the policy examples/authz_bench.rs builds for `rules` rules: half deny rules
// that never match the benchmark's call, half allow rules of which only the last one does.
func benchPolicy(rules int) string {
	type header struct {
		Key    string   `json:"key"`
		Values []string `json:"values"`
	}
	type rule struct {
		Name   string `json:"name"`
		Source struct {
			Principals []string `json:"principals"`
		} `json:"source"`
		Request struct {
			Paths   []string `json:"paths"`
			Headers []header `json:"headers,omitempty"`
		} `json:"request"`
	}
	var deny, allow []rule
	for i := 0; i < rules/2; i++ {
		var d rule
		d.Name = fmt.Sprintf("deny_%d", i)
		d.Source.Principals = []string{fmt.Sprintf("spiffe://example.org/blocked-%d", i)}
		d.Request.Paths = []string{"/greeter.Greeter/*"}
		deny = append(deny, d)
		var a rule
		a.Name = fmt.Sprintf("allow_%d", i)
		a.Source.Principals = []string{fmt.Sprintf("spiffe://example.org/team-%d", i)}
		a.Request.Paths = []string{"/greeter.Greeter/SayHello", "/greeter.Greeter/Chat"}
		a.Request.Headers = []header{{Key: "x-team", Values: []string{fmt.Sprintf("team-%d", i)}}}
		allow = append(allow, a)
	}
	policy, err := json.Marshal(map[string]any{"name": "bench", "deny_rules": deny, "allow_rules": allow})
	if err != nil {
		panic(err)
	}
	return string(policy)
}

// benchCaller is the SPIFFE ID and x-team header of the call the benchmark checks: the one
// the last allow rule allows.
func benchCaller(rules int) (string, string) {
	return fmt.Sprintf("spiffe://example.org/team-%d", rules/2-1), fmt.Sprintf("team-%d", rules/2-1)
}

func BenchmarkAuthz(b *testing.B) {
	for _, rules := range []int{10, 1000} {
		b.Run(fmt.Sprintf("rules=%d", rules), func(b *testing.B) { benchAuthz(b, rules) })
	}
}

func benchAuthz(b *testing.B, rules int) {
	check, err := authz.NewStatic(benchPolicy(rules))
	if err != nil {
		b.Fatal(err)
	}
	spiffeID, team := benchCaller(rules)
	serverTLS, clientTLS := mutualTLS(b, spiffeID)

	held := make(chan context.Context, 1)
	release := make(chan struct{})
	hold := func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		held <- ctx
		<-release
		return handler(ctx, req)
	}
	s := grpc.NewServer(grpc.Creds(credentials.NewTLS(serverTLS)), grpc.UnaryInterceptor(hold))
	pb.RegisterGreeterServer(s, &server{})
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	go s.Serve(lis)
	defer s.Stop()

	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(credentials.NewTLS(clientTLS)))
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	called := make(chan error, 1)
	go func() {
		ctx := metadata.AppendToOutgoingContext(context.Background(), "x-team", team)
		_, err := pb.NewGreeterClient(conn).SayHello(ctx, &pb.HelloRequest{Name: "bench"})
		called <- err
	}()
	ctx := <-held

	info := &grpc.UnaryServerInfo{FullMethod: "/greeter.Greeter/SayHello"}
	allowed := func(context.Context, any) (any, error) { return nil, nil }
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := check.UnaryInterceptor(ctx, nil, info, allowed); err != nil {
			b.Fatalf("the benchmark's call is denied: %v", err)
		}
	}
	b.StopTimer()
	close(release)
	if err := <-called; err != nil {
		b.Fatal(err)
	}
}

// mutualTLS makes a CA, a server certificate for 127.0.0.1 and a client certificate whose one
// URI SAN is spiffeID.
func mutualTLS(b *testing.B, spiffeID string) (*tls.Config, *tls.Config) {
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTemplate := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "bench CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTemplate, caTemplate, &caKey.PublicKey, caKey)
	if err != nil {
		b.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	issue := func(serial int64, usage x509.ExtKeyUsage, edit func(*x509.Certificate)) tls.Certificate {
		key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		template := &x509.Certificate{
			SerialNumber: big.NewInt(serial),
			NotBefore:    time.Now().Add(-time.Hour),
			NotAfter:     time.Now().Add(time.Hour),
			ExtKeyUsage:  []x509.ExtKeyUsage{usage},
		}
		edit(template)
		der, err := x509.CreateCertificate(rand.Reader, template, ca, &key.PublicKey, caKey)
		if err != nil {
			b.Fatal(err)
		}
		return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
	}
	serverCert := issue(2, x509.ExtKeyUsageServerAuth, func(c *x509.Certificate) { c.IPAddresses = []net.IP{net.ParseIP("127.0.0.1")} })
	uri, err := url.Parse(spiffeID)
	if err != nil {
		b.Fatal(err)
	}
	clientCert := issue(3, x509.ExtKeyUsageClientAuth, func(c *x509.Certificate) { c.URIs = []*url.URL{uri} })
	return &tls.Config{Certificates: []tls.Certificate{serverCert}, ClientCAs: pool, ClientAuth: tls.RequireAndVerifyClientCert},
		&tls.Config{Certificates: []tls.Certificate{clientCert}, RootCAs: pool}
}
