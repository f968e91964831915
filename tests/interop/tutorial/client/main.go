package main

import (
	"context"
	"io"
	"log"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	pb "grpc-demo/proto"
)

func main() {
	conn, _ := grpc.NewClient("localhost:50051", grpc.WithTransportCredentials(insecure.NewCredentials()))
	defer conn.Close()
	c := pb.NewGreeterClient(conn)

	// 1. Unary
	log.Println("--- 1. Unary ---")
	r, _ := c.SayHello(context.Background(), &pb.HelloRequest{Name: "Go Client"})
	log.Printf("Response: %s", r.GetMessage())

	// 2. Server Streaming
	log.Println("\n--- 2. Server Streaming ---")
	stream, _ := c.GetStockPrice(context.Background(), &pb.StockRequest{Symbol: "TSMC"})
	for {
		res, err := stream.Recv()
		if err == io.EOF { break }
		log.Printf("Stock: %s, Price: %.2f", res.GetSymbol(), res.GetPrice())
	}

	// 3. Client Streaming
	log.Println("\n--- 3. Client Streaming ---")
	mStream, _ := c.RecordMetrics(context.Background())
	// Simulate uploading data
	for _, v := range []float64{25.5, 26.8, 27.1} {
		mStream.Send(&pb.Metric{Value: v})
		time.Sleep(100 * time.Millisecond)
	}
	// Tell Server I'm done sending, and wait for result
	summary, _ := mStream.CloseAndRecv()
	log.Printf("Statistics: Count %d, Average %.2f", summary.GetCount(), summary.GetAverage())

	// 4. Bidirectional Streaming
	log.Println("\n--- 4. Chat ---")
	chatStream, _ := c.Chat(context.Background())
	waitc := make(chan struct{})
	// Background receive
	go func() {
		for {
			in, err := chatStream.Recv()
			if err == io.EOF { close(waitc); return }
			log.Printf("(Receive) %s: %s", in.GetUser(), in.GetMessage())
		}
	}()
	// Main thread send
	chatStream.Send(&pb.ChatMessage{User: "Go", Message: "Hello"})
	chatStream.Send(&pb.ChatMessage{User: "Go", Message: "Bye"})
	chatStream.CloseSend() // Tell Server I'm done speaking
	<-waitc // Wait for reception to finish
}
