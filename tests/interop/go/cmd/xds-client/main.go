// xds-client is grpc-go's xDS client, the reference the xDS tests hold ours against: SayHello
// through one channel to an xds:/// target, its bootstrap from GRPC_XDS_BOOTSTRAP or
// GRPC_XDS_BOOTSTRAP_CONFIG, the way grpc-go documents proxyless gRPC.
//
//	GRPC_XDS_BOOTSTRAP=bootstrap.json xds-client -addr xds:///greeter -warmup -calls 300
//	GRPC_XDS_BOOTSTRAP=bootstrap.json xds-client -addr xds:///greeter -until-eof -workers 4
//
// -warmup makes health checks (grpc.health.v1.Health/Check) on the same channel until stdin
// says a line: the test watches the replicas' access logs until each has answered one, and
// the counted SayHello calls, told apart by their method, then start on a channel connected
// to every endpoint. The examples/xds_client.rs of the Rust crate takes the same flags.
// Prints "CALLS ok=N failed=M" and each distinct failure as "FAILED <status>" on stderr.
// Exit codes: 0 all OK, 2 some call failed, 3 bad setup.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
	_ "google.golang.org/grpc/xds" // the xds:/// resolver and the balancers it configures

	pb "greeter-interop/proto"
)

var (
	addr     = flag.String("addr", "xds:///greeter", "target")
	calls    = flag.Int("calls", 0, "make this many calls, one after another")
	untilEOF = flag.Bool("until-eof", false, "or: call back to back until stdin is closed")
	warmup   = flag.Bool("warmup", false, "before -calls: health checks until stdin says a line")
	workers  = flag.Int("workers", 1, "concurrent callers (with -until-eof)")
	timeout  = flag.Duration("timeout", 10*time.Second, "deadline of each call")
)

func main() {
	flag.Parse()
	conn, err := grpc.NewClient(*addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		fmt.Fprintf(os.Stderr, "SETUP ERROR NewClient: %v\n", err)
		os.Exit(3)
	}
	defer conn.Close()
	greeter := pb.NewGreeterClient(conn)
	health := healthpb.NewHealthClient(conn)

	var ok, failed atomic.Int64
	var mu sync.Mutex
	seen := map[string]bool{}
	fail := func(what string) {
		failed.Add(1)
		mu.Lock()
		defer mu.Unlock()
		if !seen[what] {
			seen[what] = true
			fmt.Fprintf(os.Stderr, "FAILED %s\n", what)
		}
	}
	call := func(name string) {
		ctx, cancel := context.WithTimeout(context.Background(), *timeout)
		defer cancel()
		r, err := greeter.SayHello(ctx, &pb.HelloRequest{Name: name})
		switch {
		case err != nil:
			st := status.Convert(err)
			fail(fmt.Sprintf("%s: %s", st.Code(), st.Message()))
		case r.GetMessage() != "Hello "+name:
			fail(fmt.Sprintf("wrong reply %q", r.GetMessage()))
		default:
			ok.Add(1)
		}
	}

	// stdin's next line (or its end), as an event the calls stop or go on at.
	stdinSays := make(chan struct{})
	go func() {
		buf := make([]byte, 1)
		for {
			n, err := os.Stdin.Read(buf)
			if err != nil || (n == 1 && buf[0] == '\n') {
				close(stdinSays)
				return
			}
		}
	}()
	if *untilEOF {
		var wg sync.WaitGroup
		for w := 0; w < *workers; w++ {
			wg.Add(1)
			go func(w int) {
				defer wg.Done()
				for i := 0; ; i++ {
					select {
					case <-stdinSays:
						return
					default:
						call(fmt.Sprintf("Go %d.%d", w, i))
					}
				}
			}(w)
		}
		wg.Wait()
	} else {
		for warming := *warmup; warming; {
			select {
			case <-stdinSays:
				warming = false
			default:
				ctx, cancel := context.WithTimeout(context.Background(), *timeout)
				if _, err := health.Check(ctx, &healthpb.HealthCheckRequest{}); err != nil {
					fail(fmt.Sprintf("warm-up health check: %v", err))
				}
				cancel()
			}
		}
		for i := 0; i < *calls; i++ {
			call(fmt.Sprintf("Go %d", i))
		}
	}
	fmt.Printf("CALLS ok=%d failed=%d\n", ok.Load(), failed.Load())
	if failed.Load() > 0 {
		os.Exit(2)
	}
}
