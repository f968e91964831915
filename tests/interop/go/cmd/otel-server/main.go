// otel-server is a Greeter server instrumented with OpenTelemetry (otelgrpc's stats handler,
// W3C trace context; traces only, its metrics go to a no-op meter), exporting its SERVER spans
// over OTLP/gRPC: SayHello and GetStockPrice as the tutorial's server answers them. It prints
// "LISTENING <port>" once it serves. bench/run --tracing runs it with --batch (the SDK's batch
// span processor, as a service in production exports) and, for the cost of tracing, with
// --traces=false (no stats handler, no exporter).
package main

import (
	"context"
	"flag"
	"fmt"
	"math/rand"
	"net"
	"os"
	"os/signal"
	"syscall"
	"time"

	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.26.0"
	"google.golang.org/grpc"

	pb "greeter-interop/proto"
)

var (
	port    = flag.Int("port", 0, "port to listen on, on 127.0.0.1 (0: any free one)")
	otlp    = flag.String("otlp", "127.0.0.1:4317", "the OTLP/gRPC collector")
	service = flag.String("service-name", "go-server", "service.name of the spans")
	traced  = flag.Bool("traces", true, "trace calls (false: serve without otelgrpc and export nothing)")
	batch   = flag.Bool("batch", false, "export through the SDK's batch span processor (default: each span as it ends)")
)

type greeter struct {
	pb.UnimplementedGreeterServer
}

func (greeter) SayHello(_ context.Context, in *pb.HelloRequest) (*pb.HelloReply, error) {
	return &pb.HelloReply{Message: "Hello " + in.GetName()}, nil
}

func (greeter) GetStockPrice(in *pb.StockRequest, stream pb.Greeter_GetStockPriceServer) error {
	for i := 0; i < 5; i++ {
		if err := stream.Send(&pb.StockReply{Symbol: in.GetSymbol(), Price: 500 + rand.Float64()*100}); err != nil {
			return err
		}
		time.Sleep(10 * time.Millisecond)
	}
	return nil
}

func main() {
	flag.Parse()
	ctx := context.Background()
	var options []grpc.ServerOption
	var provider *sdktrace.TracerProvider
	if *traced {
		exporter, err := otlptracegrpc.New(ctx, otlptracegrpc.WithEndpoint(*otlp), otlptracegrpc.WithInsecure())
		if err != nil {
			fmt.Fprintf(os.Stderr, "otel-server: exporter: %v\n", err)
			os.Exit(1)
		}
		export := sdktrace.WithSyncer(exporter)
		if *batch {
			export = sdktrace.WithBatcher(exporter)
		}
		provider = sdktrace.NewTracerProvider(
			export,
			sdktrace.WithResource(resource.NewWithAttributes(semconv.SchemaURL, semconv.ServiceName(*service))),
		)
		otel.SetTracerProvider(provider)
		otel.SetTextMapPropagator(propagation.TraceContext{})
		handler := otelgrpc.NewServerHandler(otelgrpc.WithMeterProvider(noop.NewMeterProvider()))
		options = append(options, grpc.StatsHandler(handler))
	}

	lis, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", *port))
	if err != nil {
		fmt.Fprintf(os.Stderr, "otel-server: listen: %v\n", err)
		os.Exit(1)
	}
	server := grpc.NewServer(options...)
	pb.RegisterGreeterServer(server, greeter{})
	fmt.Printf("LISTENING %d\n", lis.Addr().(*net.TCPAddr).Port)
	go func() {
		stop := make(chan os.Signal, 1)
		signal.Notify(stop, syscall.SIGINT, syscall.SIGTERM)
		<-stop
		server.GracefulStop()
	}()
	if err := server.Serve(lis); err != nil {
		fmt.Fprintf(os.Stderr, "otel-server: %v\n", err)
		os.Exit(1)
	}
	if provider != nil {
		_ = provider.Shutdown(ctx)
	}
}
