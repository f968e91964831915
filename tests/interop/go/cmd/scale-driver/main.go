// scale-driver is bench/run --scale's load: it holds many streams at once (ghz cannot), or
// drives them at a modest rate, or offers unary calls at fixed rates, against any Greeter
// server, and prints what it saw as one JSON object per step on stdout.
//
//	scale-driver -addr A -mode idle -streams N -conns C       N idle subscriptions and N idle
//	                                                          chats, held until stdin closes
//	scale-driver -addr A -mode subs -streams N -conns C       N idle subscriptions only
//	scale-driver -addr A -mode chats -streams N -conns C      N idle chats only
//	scale-driver -addr A -mode conns -streams N               N connections, one idle chat each
//	scale-driver -addr A -mode active -streams N -rate R -duration D   N chats, R messages/s each
//	scale-driver -addr A -mode openloop -rates 1000,2000 -duration D   unary calls at each rate
//	scale-driver -addr A -mode payload -payload 65536 [-compress gzip] -duration D
//	                                 closed-loop SayHello with a large, compressible name
//
// In the holding modes (and active, after its measured step) it prints {"open": N, …} once
// every stream is open, then waits for stdin to close before it cancels them and exits.
// Exit status 1 on any failed call.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	_ "google.golang.org/grpc/encoding/gzip" // the gzip codec, for -compress gzip
	"google.golang.org/grpc/stats"

	pb "greeter-interop/proto"
)

var (
	addr     = flag.String("addr", "127.0.0.1:50051", "the server")
	mode     = flag.String("mode", "idle", "idle, subs, chats, conns, active or openloop")
	streams  = flag.Int("streams", 1, "streams (of each kind, for idle)")
	conns    = flag.Int("conns", 1, "connections the streams share (idle, active)")
	rate     = flag.Float64("rate", 10, "messages per second per stream (active)")
	rates    = flag.String("rates", "", "offered unary rates, calls/s, one step each (openloop)")
	duration = flag.Duration("duration", 10*time.Second, "length of a measured step (active, openloop)")
	timeout  = flag.Duration("timeout", 60*time.Second, "deadline of a unary call")
	stopP99  = flag.Float64("stop-p99-ms", 200, "openloop: no further step once a step's p99 is over this")
	payload  = flag.Int("payload", 64<<10, "payload: bytes of the SayHello name")
	compress = flag.String("compress", "", "payload: compress requests with this codec (gzip), and accept it")
	workers  = flag.Int("workers", 8, "payload: concurrent callers")
)

func fail(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "scale-driver: "+format+"\n", args...)
	os.Exit(1)
}

func emit(v map[string]any) {
	b, _ := json.Marshal(v)
	fmt.Println(string(b))
}

func dial(n int) []pb.GreeterClient {
	clients := make([]pb.GreeterClient, n)
	for i := range clients {
		// Its own connection each: grpc-go shares none between ClientConns.
		conn, err := grpc.NewClient(*addr, grpc.WithTransportCredentials(insecure.NewCredentials()),
			grpc.WithInitialWindowSize(64<<10), grpc.WithInitialConnWindowSize(64<<10))
		if err != nil {
			fail("dial: %v", err)
		}
		clients[i] = pb.NewGreeterClient(conn)
	}
	return clients
}

// waitStdin blocks until stdin is closed (the harness has measured what it wanted).
func waitStdin() {
	r := bufio.NewReader(os.Stdin)
	for {
		if _, err := r.ReadByte(); err != nil {
			return
		}
	}
}

// openIdle opens a subscription whose first tick has arrived (the server is set to tick
// rarely) and a chat that has had one reply, on client c, and leaves both open.
func openIdle(ctx context.Context, c pb.GreeterClient, subscription bool) error {
	if subscription {
		s, err := c.GetStockPrice(ctx, &pb.StockRequest{Symbol: "TSMC"})
		if err != nil {
			return err
		}
		_, err = s.Recv()
		return err
	}
	ch, err := c.Chat(ctx)
	if err != nil {
		return err
	}
	if err := ch.Send(&pb.ChatMessage{User: "scale", Message: "hi"}); err != nil {
		return err
	}
	_, err = ch.Recv()
	return err
}

func hold(kinds []bool, clients []pb.GreeterClient, n int) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	start := time.Now()
	var wg sync.WaitGroup
	var failed atomic.Int64
	sem := make(chan struct{}, 256) // streams being opened at once
	for i := 0; i < n; i++ {
		for _, sub := range kinds {
			wg.Add(1)
			sem <- struct{}{}
			go func(i int, sub bool) {
				defer wg.Done()
				defer func() { <-sem }()
				if err := openIdle(ctx, clients[i%len(clients)], sub); err != nil {
					if failed.Add(1) == 1 {
						fmt.Fprintf(os.Stderr, "scale-driver: opening a stream: %v\n", err)
					}
				}
			}(i, sub)
		}
	}
	wg.Wait()
	emit(map[string]any{"open": n * len(kinds), "failed": failed.Load(), "open_s": time.Since(start).Seconds()})
	if failed.Load() > 0 {
		os.Exit(1)
	}
	waitStdin()
}

// active opens -streams chats, prints {"open": N} once all are open, then has each send
// -rate messages a second (and read each reply) for -duration, and prints what it saw. The
// harness reads the server's CPU between the two lines, so opening is not part of it.
func active(clients []pb.GreeterClient) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	chats := make([]pb.Greeter_ChatClient, *streams)
	var failed atomic.Int64
	var wg sync.WaitGroup
	sem := make(chan struct{}, 256)
	for i := range chats {
		wg.Add(1)
		sem <- struct{}{}
		go func(i int) {
			defer wg.Done()
			defer func() { <-sem }()
			ch, err := clients[i%len(clients)].Chat(ctx)
			if err == nil {
				err = ch.Send(&pb.ChatMessage{User: "scale", Message: "open"})
			}
			if err == nil {
				_, err = ch.Recv()
			}
			if err != nil {
				if failed.Add(1) == 1 {
					fmt.Fprintf(os.Stderr, "scale-driver: opening a chat: %v\n", err)
				}
				return
			}
			chats[i] = ch
		}(i)
	}
	wg.Wait()
	emit(map[string]any{"open": *streams, "failed": failed.Load()})
	if failed.Load() > 0 {
		os.Exit(1)
	}
	var sent, received atomic.Int64
	start := time.Now()
	stop := start.Add(*duration)
	every := time.Duration(float64(time.Second) / *rate)
	for i, ch := range chats {
		wg.Add(1)
		go func(i int, ch pb.Greeter_ChatClient) {
			defer wg.Done()
			// Spread the streams' messages evenly over one period.
			first := start.Add(time.Duration(int64(i) * int64(every) / int64(len(chats))))
			for k := 0; ; k++ {
				due := first.Add(time.Duration(k) * every)
				if !due.Before(stop) {
					return
				}
				time.Sleep(time.Until(due))
				if err := ch.Send(&pb.ChatMessage{User: "scale", Message: "m"}); err != nil {
					failed.Add(1)
					return
				}
				sent.Add(1)
				if _, err := ch.Recv(); err != nil {
					failed.Add(1)
					return
				}
				received.Add(1)
			}
		}(i, ch)
	}
	wg.Wait()
	elapsed := time.Since(start).Seconds()
	emit(map[string]any{"streams": *streams, "sent": sent.Load(), "received": received.Load(),
		"failed": failed.Load(), "seconds": elapsed, "msgs_per_s": float64(received.Load()) / elapsed})
	for _, ch := range chats {
		_ = ch.CloseSend()
	}
	if failed.Load() > 0 {
		os.Exit(1)
	}
	waitStdin()
}

func percentile(sorted []time.Duration, p float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	i := int(p * float64(len(sorted)-1))
	return float64(sorted[i].Microseconds()) / 1000
}

// openloop offers each rate for -duration, starting calls on schedule whether or not the
// earlier ones have answered (open loop), and reports each step's latencies: {"step": R}
// as a step starts, its figures when its last call has ended. Exit status 1 when a call failed
// in a step short of saturation.
func openloop(clients []pb.GreeterClient) {
	failedAny := false
	for _, r := range strings.Split(*rates, ",") {
		offered, err := strconv.ParseFloat(r, 64)
		if err != nil || offered <= 0 {
			fail("bad rate %q", r)
		}
		emit(map[string]any{"step": offered})
		var mu sync.Mutex
		var latencies []time.Duration
		var failed atomic.Int64
		var wg sync.WaitGroup
		every := time.Duration(float64(time.Second) / offered)
		start := time.Now()
		n := int(offered * duration.Seconds())
		for i := 0; i < n; i++ {
			due := start.Add(time.Duration(i) * every)
			if d := time.Until(due); d > 0 {
				time.Sleep(d)
			}
			wg.Add(1)
			go func(i int, due time.Time) {
				defer wg.Done()
				ctx, cancel := context.WithTimeout(context.Background(), *timeout)
				defer cancel()
				_, err := clients[i%len(clients)].SayHello(ctx, &pb.HelloRequest{Name: "scale"})
				// Latency from when the call was due, so a driver that falls behind shows it.
				took := time.Since(due)
				if err != nil {
					if failed.Add(1) == 1 {
						fmt.Fprintf(os.Stderr, "scale-driver: SayHello at %g/s: %v\n", offered, err)
					}
					return
				}
				mu.Lock()
				latencies = append(latencies, took)
				mu.Unlock()
			}(i, due)
		}
		wg.Wait()
		elapsed := time.Since(start).Seconds()
		sort.Slice(latencies, func(a, b int) bool { return latencies[a] < latencies[b] })
		emit(map[string]any{"offered": offered, "calls": n, "failed": failed.Load(),
			"achieved": float64(len(latencies)) / elapsed, "p50_ms": percentile(latencies, 0.50),
			"p99_ms": percentile(latencies, 0.99), "p999_ms": percentile(latencies, 0.999)})
		if percentile(latencies, 0.99) > *stopP99 || len(latencies) == 0 {
			// Past saturation: a higher rate only lengthens the queue. Calls a server sheds
			// here (C-core cancels those its application cannot take up in time) are its
			// answer to overload, reported in the step's "failed", not an error of the run.
			break
		}
		failedAny = failedAny || failed.Load() > 0
	}
	if failedAny {
		os.Exit(1)
	}
}

// wireBytes counts the bytes of every message as it went over the wire (after compression),
// each way, from grpc-go's stats events.
type wireBytes struct{ out, in atomic.Int64 }

func (w *wireBytes) TagRPC(ctx context.Context, _ *stats.RPCTagInfo) context.Context { return ctx }
func (w *wireBytes) TagConn(ctx context.Context, _ *stats.ConnTagInfo) context.Context {
	return ctx
}
func (w *wireBytes) HandleConn(context.Context, stats.ConnStats) {}
func (w *wireBytes) HandleRPC(_ context.Context, s stats.RPCStats) {
	switch p := s.(type) {
	case *stats.OutPayload:
		w.out.Add(int64(p.WireLength))
	case *stats.InPayload:
		w.in.Add(int64(p.WireLength))
	}
}

// text is n bytes of words drawn (with a fixed seed) from a small vocabulary: compressible
// as log lines or chat text are (gzip takes it to about a third), not as a run of one byte.
func text(n int) string {
	words := strings.Fields("the a of and to in stock price ticker symbol greeter hello chat message metric " +
		"value average count server client replica stream call deadline status ok error retry " +
		"north south east west market open close high low volume trade buy sell order book")
	r := rand.New(rand.NewPCG(1, 2))
	var b strings.Builder
	for b.Len() < n {
		b.WriteString(words[r.IntN(len(words))])
		b.WriteByte(' ')
	}
	return b.String()[:n]
}

// payloadRun calls SayHello with a -payload-byte name from -workers callers for -duration,
// every reply checked, and reports calls/s and the wire bytes per call each way.
func payloadRun() {
	wire := &wireBytes{}
	conn, err := grpc.NewClient(*addr, grpc.WithTransportCredentials(insecure.NewCredentials()), grpc.WithStatsHandler(wire),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(16<<20), grpc.MaxCallSendMsgSize(16<<20)))
	if err != nil {
		fail("dial: %v", err)
	}
	c := pb.NewGreeterClient(conn)
	var opts []grpc.CallOption
	if *compress != "" {
		opts = append(opts, grpc.UseCompressor(*compress))
	}
	name := text(*payload)
	want := "Hello " + name
	call := func() error {
		ctx, cancel := context.WithTimeout(context.Background(), *timeout)
		defer cancel()
		r, err := c.SayHello(ctx, &pb.HelloRequest{Name: name}, opts...)
		if err == nil && r.GetMessage() != want {
			err = fmt.Errorf("wrong reply of %d bytes", len(r.GetMessage()))
		}
		return err
	}
	if err := call(); err != nil { // warm: the connection, and the first call's costs
		fail("first call: %v", err)
	}
	wire.out.Store(0)
	wire.in.Store(0)
	emit(map[string]any{"step": "payload"})
	var calls, failed atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	stop := start.Add(*duration)
	for w := 0; w < *workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(stop) {
				if err := call(); err != nil {
					if failed.Add(1) == 1 {
						fmt.Fprintf(os.Stderr, "scale-driver: SayHello: %v\n", err)
					}
					return
				}
				calls.Add(1)
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start).Seconds()
	n := calls.Load()
	out := map[string]any{"calls": n, "failed": failed.Load(), "seconds": elapsed, "calls_per_s": float64(n) / elapsed}
	if n > 0 {
		out["request_wire_bytes"] = float64(wire.out.Load()) / float64(n)
		out["reply_wire_bytes"] = float64(wire.in.Load()) / float64(n)
	}
	emit(out)
	if failed.Load() > 0 {
		os.Exit(1)
	}
}

func main() {
	flag.Parse()
	switch *mode {
	case "idle":
		hold([]bool{true, false}, dial(*conns), *streams)
	case "subs":
		hold([]bool{true}, dial(*conns), *streams)
	case "chats":
		hold([]bool{false}, dial(*conns), *streams)
	case "conns":
		hold([]bool{false}, dial(*streams), *streams)
	case "active":
		active(dial(*conns))
	case "openloop":
		openloop(dial(*conns))
	case "payload":
		payloadRun()
	default:
		fail("unknown mode %q", *mode)
	}
}
