// lb-client calls SayHello through one channel over several replicas, configured the way
// grpc-go documents it: a default service config (round_robin, healthCheckConfig, a retry
// policy) given with grpc.WithDefaultServiceConfig, and the health package imported so that
// subchannels are health-checked.
//
//	lb-client -addr ipv4:127.0.0.1:5001,127.0.0.1:5002 -service-config '{...}' -calls 300
//	lb-client -addr ... -service-config '{...}' -for 4s -workers 4
//	lb-client -addr dns://127.0.0.1:5353/greeter.test:50051 -min-resolution-interval 1s ...
//
// grpc-go has no "ipv4:" resolver; such a list is handed to a manual resolver instead.
// Prints "CALLS ok=N failed=M" and each distinct failure as "FAILED <status>" on stderr.
// Exit codes: 0 all OK, 2 some call failed, 3 bad setup.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	_ "google.golang.org/grpc/health" // client-side health checking
	"google.golang.org/grpc/resolver"
	"google.golang.org/grpc/resolver/dns"
	"google.golang.org/grpc/resolver/manual"
	"google.golang.org/grpc/status"

	pb "greeter-interop/proto"
)

var (
	addr          = flag.String("addr", "localhost:50051", "target; ipv4:a:p,b:p,... for a list of replicas")
	serviceConfig = flag.String("service-config", "", "default service config (JSON)")
	calls         = flag.Int("calls", 0, "make this many calls, one after another")
	runFor        = flag.Duration("for", 0, "or: call back to back for this long")
	untilEOF      = flag.Bool("until-eof", false, "or: call back to back until stdin is closed")
	warmup        = flag.Bool("warmup", false, "before -calls: call with a 777-byte name until stdin says a line")
	workers       = flag.Int("workers", 1, "concurrent callers (with -for or -until-eof)")
	timeout       = flag.Duration("timeout", 10*time.Second, "deadline of each call")
	minResolution = flag.Duration("min-resolution-interval", 0, "dns: targets: least time between two resolutions (grpc-go's default 30s)")
)

func main() {
	flag.Parse()
	if *minResolution > 0 {
		// Process-wide in grpc-go, and only before the first channel exists.
		dns.SetMinResolutionInterval(*minResolution)
	}
	opts := []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}
	if *serviceConfig != "" {
		opts = append(opts, grpc.WithDefaultServiceConfig(*serviceConfig))
	}
	target := *addr
	if list, ok := strings.CutPrefix(target, "ipv4:"); ok {
		r := manual.NewBuilderWithScheme("replicas")
		var addrs []resolver.Address
		for _, a := range strings.Split(list, ",") {
			addrs = append(addrs, resolver.Address{Addr: a})
		}
		r.InitialState(resolver.State{Addresses: addrs})
		opts = append(opts, grpc.WithResolvers(r))
		target = "replicas:///greeter"
	}
	conn, err := grpc.NewClient(target, opts...)
	if err != nil {
		fmt.Fprintf(os.Stderr, "SETUP ERROR NewClient: %v\n", err)
		os.Exit(3)
	}
	defer conn.Close()
	c := pb.NewGreeterClient(conn)

	var ok, failed atomic.Int64
	var mu sync.Mutex
	seen := map[string]bool{}
	call := func(name string) {
		ctx, cancel := context.WithTimeout(context.Background(), *timeout)
		defer cancel()
		r, err := c.SayHello(ctx, &pb.HelloRequest{Name: name})
		if err == nil && r.GetMessage() == "Hello "+name {
			ok.Add(1)
			return
		}
		failed.Add(1)
		what := fmt.Sprintf("wrong reply %q", r.GetMessage())
		if err != nil {
			st := status.Convert(err)
			what = fmt.Sprintf("%s: %s", st.Code(), st.Message())
		}
		mu.Lock()
		defer mu.Unlock()
		if !seen[what] {
			seen[what] = true
			fmt.Fprintf(os.Stderr, "FAILED %s\n", what)
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
	if *runFor > 0 || *untilEOF {
		deadline := time.Now().Add(*runFor)
		done := func() bool {
			if *untilEOF {
				select {
				case <-stdinSays:
					return true
				default:
					return false
				}
			}
			return !time.Now().Before(deadline)
		}
		var wg sync.WaitGroup
		for w := 0; w < *workers; w++ {
			wg.Add(1)
			go func(w int) {
				defer wg.Done()
				for i := 0; !done(); i++ {
					call(fmt.Sprintf("Go %d.%d", w, i))
				}
			}(w)
		}
		wg.Wait()
	} else {
		// A name of a length no counted call has marks the warm-up calls in the servers' logs:
		// they go on until every replica is connected (the test watches, then says so).
		for warming := *warmup; warming; {
			select {
			case <-stdinSays:
				warming = false
			default:
				call(strings.Repeat("w", 777))
			}
		}
		ok.Store(0) // only the counted calls are reported
		failed.Store(0)
		for i := 0; i < *calls; i++ {
			call(fmt.Sprintf("Go %d", i))
		}
	}
	fmt.Printf("CALLS ok=%d failed=%d\n", ok.Load(), failed.Load())
	if failed.Load() > 0 {
		os.Exit(2)
	}
}
