import sys
import os
import grpc
import time

# [Critical] Set path to find the proto folder
current_dir = os.path.dirname(os.path.abspath(__file__))
project_root = os.path.dirname(current_dir)
sys.path.append(os.path.join(project_root, 'proto'))

import greeter_pb2
import greeter_pb2_grpc

def run():
    with grpc.insecure_channel('localhost:50051') as channel:
        stub = greeter_pb2_grpc.GreeterStub(channel)

        print("\n[Unary]")
        res = stub.SayHello(greeter_pb2.HelloRequest(name="Python"))
        print(f"Response: {res.message}")

        print("\n[Server Streaming]")
        for stock in stub.GetStockPrice(greeter_pb2.StockRequest(symbol="TSMC")):
            print(f"Stock: {stock.symbol}, Price: {stock.price:.2f}")

        print("\n[Client Streaming]")
        def generate_metrics():
            for v in [30.5, 31.0, 30.8]:
                print(f"Uploading: {v}")
                yield greeter_pb2.Metric(value=v)
                time.sleep(0.1)

        summary = stub.RecordMetrics(generate_metrics())
        print(f"Statistics: Count {summary.count}, Average {summary.average:.2f}")

        print("\n[Chat]")
        def chat_generator():
            msgs = ["Hi from Python", "Streaming is cool"]
            for m in msgs:
                print(f"(Send) {m}")
                yield greeter_pb2.ChatMessage(user="Python", message=m)
                time.sleep(0.5)

        # Python handles concurrency automatically, pass in generator, and iterate over returned results
        responses = stub.Chat(chat_generator())
        for res in responses:
            print(f"(Receive) {res.user}: {res.message}")

if __name__ == '__main__':
    run()
