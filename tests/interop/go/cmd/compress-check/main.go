// compress-check runs gRPC's four compression interop cases (client_compressed_unary,
// client_compressed_streaming, server_compressed_unary, server_compressed_streaming, as
// grpc/grpc doc/interop-test-descriptions.md describes them) on grpc-go, with gzip
// registered. grpc-go's own interop client and server implement none of them, and neither
// can tell whether a message crossed the wire compressed; this program can, through a
// stats.Handler that records every message's state per RPC.
//
//	compress-check client -addr HOST:PORT -case NAME   runs one case (or "all") against a
//	                                                   grpc.testing.TestService, plaintext
//	compress-check server -port P                      serves TestService (0: pick a port)
//
// The client prints one line per checked step, then "PASS <case>" or
// "FAIL <case>: <expected vs seen>"; it exits 1 if any case failed and 2 on bad usage.
// The server prints "LISTENING <port>" once it accepts, honours expect_compressed (an
// INVALID_ARGUMENT when a request message that should be compressed is not) and
// response_compressed / ResponseParameters.compressed, and stops on SIGTERM or SIGINT.
//
// How a message's state is seen: grpc-go hands no per-message compressed flag to user
// code. stats.InPayload (and OutPayload) carry Length, the size of the message after
// decompression, and CompressedLength, the length prefix of its frame as it came off the
// wire: recvAndDecompress (rpc_util.go:948) takes the frame's size before it decompresses,
// and for a frame with the flag unset it hands that very buffer on (rpc_util.go:964), so an
// uncompressed message has CompressedLength == Length by construction. A compressed one
// differs unless gzip output happens to be exactly as long as its input, which cannot
// happen for the thousands of zero bytes these cases send (gzip shrinks them a
// hundredfold). So "compressed" here means CompressedLength != Length.
//
// How a message's state is chosen: grpc-go compresses per call (grpc.UseCompressor on the
// client, grpc.SetSendCompressor on the server, which works only before the headers go
// out). The one per-message escape is grpc.PreparedMsg: Encode (preloader.go:42) takes its
// compressor from the stream it is given, and SendMsg sends a prepared frame as it is,
// flag included (prepareMsg, stream.go:1996). A frame encoded on a stream that has no
// compressor therefore goes out uncompressed inside a gzip call, which the protocol allows
// (the flag is per message; grpc-encoding only names the algorithm).
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/encoding/gzip" // registers gzip; the client then advertises it
	tpb "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/stats"
	"google.golang.org/grpc/status"
)

func usage() {
	fmt.Fprintf(os.Stderr, "usage:\n  compress-check client -addr HOST:PORT -case NAME|all\n  compress-check server [-host H] -port P\ncases: %s\n", strings.Join(caseOrder, ", "))
	os.Exit(2)
}

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	switch os.Args[1] {
	case "client":
		fs := flag.NewFlagSet("client", flag.ExitOnError)
		addr := fs.String("addr", "127.0.0.1:50051", "the TestService server")
		name := fs.String("case", "all", "case to run, or all")
		fs.Parse(os.Args[2:])
		os.Exit(runClient(*addr, *name))
	case "server":
		fs := flag.NewFlagSet("server", flag.ExitOnError)
		host := fs.String("host", "127.0.0.1", "address to listen on")
		port := fs.Int("port", 0, "port to listen on (0: pick a free one)")
		fs.Parse(os.Args[2:])
		runServer(*host, *port)
	default:
		usage()
	}
}

// ---- what crossed the wire ----

// msgStat is one message as the stats handler saw it.
type msgStat struct {
	length int // after decompression
	wire   int // the frame's length prefix: compressed size, or length if sent plain
}

// compressed: see the package comment for why this comparison is exact here.
func (m msgStat) compressed() bool { return m.wire != m.length }

func (m msgStat) String() string {
	if m.compressed() {
		return fmt.Sprintf("compressed (%d bytes, %d on the wire)", m.length, m.wire)
	}
	return fmt.Sprintf("uncompressed (%d bytes)", m.length)
}

// recorder collects one RPC's messages, both directions, in order.
type recorder struct {
	mu       sync.Mutex
	encoding string // grpc-encoding of the headers received
	in, out  []msgStat
}

func (r *recorder) received(i int) (msgStat, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if i >= len(r.in) {
		return msgStat{}, false
	}
	return r.in[i], true
}

func (r *recorder) sent(i int) (msgStat, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if i >= len(r.out) {
		return msgStat{}, false
	}
	return r.out[i], true
}

func (r *recorder) recvEncoding() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.encoding
}

type recorderKey struct{}

func withRecorder(ctx context.Context) (context.Context, *recorder) {
	r := &recorder{}
	return context.WithValue(ctx, recorderKey{}, r), r
}

func recorderFrom(ctx context.Context) *recorder {
	r, _ := ctx.Value(recorderKey{}).(*recorder)
	return r
}

// wireStats is the stats.Handler of both modes. On the server, TagRPC gives each RPC its
// recorder, and the handler finds it in its own context, which grpc-go derives from the
// tagged one. On the client the caller puts the recorder into the call's context first
// (so it can read it afterwards); TagRPC keeps it, and any transparent-retry attempt of
// the call shares it, which is harmless since only the committed attempt exchanges
// messages.
type wireStats struct{}

func (wireStats) TagRPC(ctx context.Context, _ *stats.RPCTagInfo) context.Context {
	if recorderFrom(ctx) != nil {
		return ctx
	}
	ctx, _ = withRecorder(ctx)
	return ctx
}

func (wireStats) HandleRPC(ctx context.Context, s stats.RPCStats) {
	r := recorderFrom(ctx)
	if r == nil {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	switch s := s.(type) {
	case *stats.InHeader:
		r.encoding = s.Compression
	case *stats.InPayload:
		r.in = append(r.in, msgStat{length: s.Length, wire: s.CompressedLength})
	case *stats.OutPayload:
		r.out = append(r.out, msgStat{length: s.Length, wire: s.CompressedLength})
	}
}

func (wireStats) TagConn(ctx context.Context, _ *stats.ConnTagInfo) context.Context { return ctx }
func (wireStats) HandleConn(context.Context, stats.ConnStats)                       {}

func zeros(n int) *tpb.Payload {
	return &tpb.Payload{Type: tpb.PayloadType_COMPRESSABLE, Body: make([]byte, n)}
}

// ---- client ----

var caseOrder = []string{
	"client_compressed_unary",
	"client_compressed_streaming",
	"server_compressed_unary",
	"server_compressed_streaming",
}

var cases = map[string]func(tpb.TestServiceClient, func(string, ...any)) error{
	"client_compressed_unary":     clientCompressedUnary,
	"client_compressed_streaming": clientCompressedStreaming,
	"server_compressed_unary":     serverCompressedUnary,
	"server_compressed_streaming": serverCompressedStreaming,
}

const callTimeout = 30 * time.Second

// callCtx is one call's context: its deadline and its recorder.
func callCtx() (context.Context, *recorder, context.CancelFunc) {
	ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
	ctx, rec := withRecorder(ctx)
	return ctx, rec, cancel
}

func describe(err error) string {
	if err == nil {
		return "OK"
	}
	st := status.Convert(err)
	return fmt.Sprintf("%s (%q)", st.Code(), st.Message())
}

func state(compressed bool) string {
	if compressed {
		return "compressed"
	}
	return "uncompressed"
}

// checkMsg says whether message i of one direction had the expected state.
func checkMsg(what string, i int, get func(int) (msgStat, bool), want bool) error {
	m, ok := get(i)
	if !ok {
		return fmt.Errorf("%s: want it %s, but the stats handler saw no such message", what, state(want))
	}
	if m.compressed() != want {
		return fmt.Errorf("%s: want it %s, it was %v", what, state(want), m)
	}
	return nil
}

func runClient(addr, name string) int {
	names := caseOrder
	if name != "all" {
		if cases[name] == nil {
			fmt.Fprintf(os.Stderr, "compress-check: unknown case %q\n", name)
			usage()
		}
		names = []string{name}
	}
	conn, err := grpc.NewClient(addr,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithStatsHandler(wireStats{}))
	if err != nil {
		fmt.Fprintf(os.Stderr, "compress-check: NewClient: %v\n", err)
		return 2
	}
	defer conn.Close()
	c := tpb.NewTestServiceClient(conn)
	rc := 0
	for _, n := range names {
		step := func(format string, args ...any) { fmt.Printf("%s: "+format+"\n", append([]any{n}, args...)...) }
		if err := cases[n](c, step); err != nil {
			fmt.Printf("FAIL %s: %v\n", n, err)
			rc = 1
			continue
		}
		fmt.Printf("PASS %s\n", n)
	}
	return rc
}

func clientCompressedUnary(c tpb.TestServiceClient, step func(string, ...any)) error {
	req := func(expect bool) *tpb.SimpleRequest {
		return &tpb.SimpleRequest{
			ResponseType:     tpb.PayloadType_COMPRESSABLE,
			ResponseSize:     314159,
			Payload:          zeros(271828),
			ExpectCompressed: &tpb.BoolValue{Value: expect},
		}
	}

	// 1. The probe: a server that honours expect_compressed must refuse a plain request.
	ctx, rec, cancel := callCtx()
	_, err := c.UnaryCall(ctx, req(true))
	cancel()
	if err := checkMsg("probe request", 0, rec.sent, false); err != nil {
		return err
	}
	if status.Code(err) != codes.InvalidArgument {
		return fmt.Errorf("probe (uncompressed request, expect_compressed=true): want INVALID_ARGUMENT, got %s", describe(err))
	}
	step("probe: uncompressed request with expect_compressed=true refused: %s", describe(err))

	// 2 and 3: the same request compressed, then a plain one that expects no compression.
	for _, compress := range []bool{true, false} {
		ctx, rec, cancel := callCtx()
		var opts []grpc.CallOption
		if compress {
			opts = append(opts, grpc.UseCompressor(gzip.Name))
		}
		resp, err := c.UnaryCall(ctx, req(compress), opts...)
		cancel()
		what := fmt.Sprintf("%s request with expect_compressed=%v", state(compress), compress)
		if err != nil {
			return fmt.Errorf("%s: want OK, got %s", what, describe(err))
		}
		if err := checkMsg(what, 0, rec.sent, compress); err != nil {
			return err
		}
		if n := len(resp.GetPayload().GetBody()); n != 314159 {
			return fmt.Errorf("%s: want a 314159-byte response payload, got %d bytes", what, n)
		}
		m, _ := rec.sent(0)
		step("%s: request went %v, call OK, response payload 314159 bytes", what, m)
	}
	return nil
}

func clientCompressedStreaming(c tpb.TestServiceClient, step func(string, ...any)) error {
	// 1. The probe: one plain message that expects compression must fail the call.
	ctx, rec, cancel := callCtx()
	defer cancel()
	probe, err := c.StreamingInputCall(ctx)
	if err != nil {
		return fmt.Errorf("probe: StreamingInputCall: %s", describe(err))
	}
	// The second message of step 2 must go out uncompressed inside a gzip call. This call has
	// no compressor, so a PreparedMsg encoded on it is a plain frame (see the package comment).
	second := &grpc.PreparedMsg{}
	if err := second.Encode(probe, &tpb.StreamingInputCallRequest{
		Payload:          zeros(45904),
		ExpectCompressed: &tpb.BoolValue{Value: false},
	}); err != nil {
		return fmt.Errorf("encoding the uncompressed second message: %v", err)
	}
	// io.EOF from Send means the server has already ended the call; CloseAndRecv says how.
	if err := probe.Send(&tpb.StreamingInputCallRequest{
		Payload:          zeros(27182),
		ExpectCompressed: &tpb.BoolValue{Value: true},
	}); err != nil && err != io.EOF {
		return fmt.Errorf("probe: Send: %s", describe(err))
	}
	_, err = probe.CloseAndRecv()
	cancel()
	if err := checkMsg("probe message", 0, rec.sent, false); err != nil {
		return err
	}
	if status.Code(err) != codes.InvalidArgument {
		return fmt.Errorf("probe (one uncompressed message, expect_compressed=true): want INVALID_ARGUMENT, got %s", describe(err))
	}
	step("probe: uncompressed message with expect_compressed=true refused: %s", describe(err))

	// 2. One gzip call: a compressed message that expects it, then a plain one that does not.
	ctx, rec, cancel = callCtx()
	defer cancel()
	stream, err := c.StreamingInputCall(ctx, grpc.UseCompressor(gzip.Name))
	if err != nil {
		return fmt.Errorf("StreamingInputCall: %s", describe(err))
	}
	if err := stream.Send(&tpb.StreamingInputCallRequest{
		Payload:          zeros(27182),
		ExpectCompressed: &tpb.BoolValue{Value: true},
	}); err != nil && err != io.EOF {
		return fmt.Errorf("first message: Send: %s", describe(err))
	}
	if err := stream.SendMsg(second); err != nil && err != io.EOF {
		return fmt.Errorf("second message: Send: %s", describe(err))
	}
	resp, err := stream.CloseAndRecv()
	if err != nil {
		return fmt.Errorf("compressed then uncompressed message: want OK, got %s", describe(err))
	}
	if err := checkMsg("first message (expect_compressed=true)", 0, rec.sent, true); err != nil {
		return err
	}
	if err := checkMsg("second message (expect_compressed=false)", 1, rec.sent, false); err != nil {
		return err
	}
	if got := resp.GetAggregatedPayloadSize(); got != 73086 {
		return fmt.Errorf("want aggregated_payload_size 73086, got %d", got)
	}
	m0, _ := rec.sent(0)
	m1, _ := rec.sent(1)
	step("one call: first message went %v, second %v; call OK, aggregated_payload_size 73086", m0, m1)
	return nil
}

func serverCompressedUnary(c tpb.TestServiceClient, step func(string, ...any)) error {
	for _, compressed := range []bool{true, false} {
		ctx, rec, cancel := callCtx()
		resp, err := c.UnaryCall(ctx, &tpb.SimpleRequest{
			ResponseType:       tpb.PayloadType_COMPRESSABLE,
			ResponseSize:       314159,
			Payload:            zeros(271828),
			ResponseCompressed: &tpb.BoolValue{Value: compressed},
		})
		cancel()
		what := fmt.Sprintf("response_compressed=%v", compressed)
		if err != nil {
			return fmt.Errorf("%s: want OK, got %s", what, describe(err))
		}
		if n := len(resp.GetPayload().GetBody()); n != 314159 {
			return fmt.Errorf("%s: want a 314159-byte response payload, got %d bytes", what, n)
		}
		if err := checkMsg(what+": response", 0, rec.received, compressed); err != nil {
			return err
		}
		m, _ := rec.received(0)
		step("%s: call OK, response arrived %v", what, m)
	}
	return nil
}

func serverCompressedStreaming(c tpb.TestServiceClient, step func(string, ...any)) error {
	ctx, rec, cancel := callCtx()
	defer cancel()
	want := []struct {
		compressed bool
		size       int
	}{{true, 31415}, {false, 92653}}
	req := &tpb.StreamingOutputCallRequest{ResponseType: tpb.PayloadType_COMPRESSABLE}
	for _, w := range want {
		req.ResponseParameters = append(req.ResponseParameters, &tpb.ResponseParameters{
			Size:       int32(w.size),
			Compressed: &tpb.BoolValue{Value: w.compressed},
		})
	}
	stream, err := c.StreamingOutputCall(ctx, req)
	if err != nil {
		return fmt.Errorf("StreamingOutputCall: %s", describe(err))
	}
	var sizes []int
	for {
		resp, err := stream.Recv()
		if err == io.EOF {
			break
		}
		if err != nil {
			return fmt.Errorf("after %d responses: want OK, got %s", len(sizes), describe(err))
		}
		sizes = append(sizes, len(resp.GetPayload().GetBody()))
	}
	if len(sizes) != len(want) {
		return fmt.Errorf("want %d responses, got %d", len(want), len(sizes))
	}
	for i, w := range want {
		what := fmt.Sprintf("response %d (compressed=%v, size %d)", i+1, w.compressed, w.size)
		if sizes[i] != w.size {
			return fmt.Errorf("%s: payload is %d bytes", what, sizes[i])
		}
		if err := checkMsg(what, i, rec.received, w.compressed); err != nil {
			return err
		}
		m, _ := rec.received(i)
		step("%s arrived %v", what, m)
	}
	return nil
}

// ---- server ----

type testServer struct {
	tpb.UnimplementedTestServiceServer
}

// expectCompressed refuses request message i unless it arrived compressed.
func expectCompressed(ctx context.Context, i int) error {
	rec := recorderFrom(ctx)
	if rec == nil {
		return status.Error(codes.Internal, "compress-check: no wire recorder for this RPC")
	}
	m, ok := rec.received(i)
	if !ok {
		return status.Errorf(codes.Internal, "compress-check: request message %d not recorded", i)
	}
	if !m.compressed() {
		return status.Errorf(codes.InvalidArgument, "expect_compressed is true but request message %d arrived %v", i, m)
	}
	return nil
}

// requestCompressed says whether the client named a real grpc-encoding. grpc-go then
// compresses the replies with it unless told otherwise, and gives the stream's rpcInfo
// that compressor (server.go:1429), which PreparedMsg.Encode uses.
func requestCompressed(ctx context.Context) bool {
	rec := recorderFrom(ctx)
	if rec == nil {
		return false
	}
	enc := rec.recvEncoding()
	return enc != "" && enc != encoding.Identity
}

// sendCompression picks the call's reply compression; it must run before the headers go out.
func sendCompression(ctx context.Context, compressed bool) error {
	name := encoding.Identity
	if compressed {
		name = gzip.Name
	}
	if err := grpc.SetSendCompressor(ctx, name); err != nil {
		return status.Errorf(codes.InvalidArgument, "cannot send the reply %s: %v", state(compressed), err)
	}
	return nil
}

func (testServer) EmptyCall(context.Context, *tpb.Empty) (*tpb.Empty, error) {
	return &tpb.Empty{}, nil
}

func (testServer) UnaryCall(ctx context.Context, req *tpb.SimpleRequest) (*tpb.SimpleResponse, error) {
	if req.GetExpectCompressed().GetValue() {
		if err := expectCompressed(ctx, 0); err != nil {
			return nil, err
		}
	}
	// Unset: grpc-go's default, the reply goes in the request's encoding. Explicitly false
	// on a compressed request needs identity, else the reply would be compressed anyway.
	if rc := req.GetResponseCompressed(); rc != nil && (rc.GetValue() || requestCompressed(ctx)) {
		if err := sendCompression(ctx, rc.GetValue()); err != nil {
			return nil, err
		}
	}
	if st := req.GetResponseStatus(); st != nil && st.GetCode() != 0 {
		return nil, status.Error(codes.Code(st.GetCode()), st.GetMessage())
	}
	return &tpb.SimpleResponse{Payload: zeros(int(req.GetResponseSize()))}, nil
}

func (testServer) StreamingInputCall(stream grpc.ClientStreamingServer[tpb.StreamingInputCallRequest, tpb.StreamingInputCallResponse]) error {
	sum := 0
	for i := 0; ; i++ {
		req, err := stream.Recv()
		if err == io.EOF {
			return stream.SendAndClose(&tpb.StreamingInputCallResponse{AggregatedPayloadSize: int32(sum)})
		}
		if err != nil {
			return err
		}
		if req.GetExpectCompressed().GetValue() {
			if err := expectCompressed(stream.Context(), i); err != nil {
				return err
			}
		}
		sum += len(req.GetPayload().GetBody())
	}
}

// StreamingOutputCall compresses per message. grpc-go has no per-message switch on the
// server, so the call is made gzip when any reply asks for compression, and a reply that
// asks for none goes as a PreparedMsg encoded on this stream, whose rpcInfo has no
// compressor when the request came uncompressed (the interop case's request does).
// Limitation: when the request itself came compressed, that rpcInfo has gzip, grpc-go
// offers no way to produce a plain frame, and such a reply goes out compressed too; the
// server says so on stderr.
func (testServer) StreamingOutputCall(req *tpb.StreamingOutputCallRequest, stream grpc.ServerStreamingServer[tpb.StreamingOutputCallResponse]) error {
	ctx := stream.Context()
	anyCompressed := false
	for _, p := range req.GetResponseParameters() {
		anyCompressed = anyCompressed || p.GetCompressed().GetValue()
	}
	reqCompressed := requestCompressed(ctx)
	if anyCompressed || reqCompressed {
		if err := sendCompression(ctx, anyCompressed); err != nil {
			return err
		}
	}
	for i, p := range req.GetResponseParameters() {
		if us := p.GetIntervalUs(); us > 0 {
			select {
			case <-time.After(time.Duration(us) * time.Microsecond):
			case <-ctx.Done():
				return status.FromContextError(ctx.Err()).Err()
			}
		}
		resp := &tpb.StreamingOutputCallResponse{Payload: zeros(int(p.GetSize()))}
		if !anyCompressed || p.GetCompressed().GetValue() {
			if err := stream.Send(resp); err != nil {
				return err
			}
			continue
		}
		if reqCompressed {
			log.Printf("StreamingOutputCall: reply %d asks for no compression, but the request came compressed: it goes out compressed", i+1)
		}
		plain := &grpc.PreparedMsg{}
		if err := plain.Encode(stream, resp); err != nil {
			return status.Errorf(codes.Internal, "encoding reply %d: %v", i+1, err)
		}
		if err := stream.SendMsg(plain); err != nil {
			return err
		}
	}
	if st := req.GetResponseStatus(); st != nil && st.GetCode() != 0 {
		return status.Error(codes.Code(st.GetCode()), st.GetMessage())
	}
	return nil
}

func runServer(host string, port int) {
	lis, err := net.Listen("tcp", net.JoinHostPort(host, strconv.Itoa(port)))
	if err != nil {
		log.Fatalf("Failed to listen: %v", err)
	}
	s := grpc.NewServer(grpc.StatsHandler(wireStats{}))
	tpb.RegisterTestServiceServer(s, testServer{})

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
