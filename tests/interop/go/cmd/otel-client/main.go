// otel-client calls a Greeter server as an OpenTelemetry-instrumented grpc-go client
// (otelgrpc's stats handler, W3C trace context), exporting its CLIENT spans over OTLP/gRPC,
// so a test can find the trace in the collector. It makes one SayHello and one GetStockPrice
// subscription (--calls), then flushes its spans and exits: 0 when every call succeeded.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.26.0"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	pb "greeter-interop/proto"
)

var (
	addr    = flag.String("addr", "127.0.0.1:50051", "the Greeter server")
	otlp    = flag.String("otlp", "127.0.0.1:4317", "the OTLP/gRPC collector")
	service = flag.String("service-name", "go-client", "service.name of the spans")
	calls   = flag.String("calls", "both", "unary, stream or both")
)

func fail(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "otel-client: "+format+"\n", args...)
	os.Exit(1)
}

func main() {
	flag.Parse()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	exporter, err := otlptracegrpc.New(ctx, otlptracegrpc.WithEndpoint(*otlp), otlptracegrpc.WithInsecure())
	if err != nil {
		fail("exporter: %v", err)
	}
	provider := sdktrace.NewTracerProvider(
		sdktrace.WithSyncer(exporter),
		sdktrace.WithResource(resource.NewWithAttributes(semconv.SchemaURL, semconv.ServiceName(*service))),
	)
	otel.SetTracerProvider(provider)
	otel.SetTextMapPropagator(propagation.TraceContext{})

	conn, err := grpc.NewClient(*addr,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithStatsHandler(otelgrpc.NewClientHandler()))
	if err != nil {
		fail("dial: %v", err)
	}
	client := pb.NewGreeterClient(conn)
	if *calls == "unary" || *calls == "both" {
		r, err := client.SayHello(ctx, &pb.HelloRequest{Name: "otel"})
		if err != nil || r.GetMessage() != "Hello otel" {
			fail("SayHello: %v %q", err, r.GetMessage())
		}
	}
	if *calls == "stream" || *calls == "both" {
		stream, err := client.GetStockPrice(ctx, &pb.StockRequest{Symbol: "TSMC"})
		if err != nil {
			fail("GetStockPrice: %v", err)
		}
		n := 0
		for {
			_, err := stream.Recv()
			if err == io.EOF {
				break
			}
			if err != nil {
				fail("GetStockPrice after %d ticks: %v", n, err)
			}
			n++
		}
		fmt.Printf("ticks %d\n", n)
	}
	conn.Close()
	if err := provider.Shutdown(ctx); err != nil {
		fail("export: %v", err)
	}
	fmt.Println("OK")
}
