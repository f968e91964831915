"""The tutorial's Greeter server in Python, with the same flags and output as the Go
interop-server: prints "LISTENING <port>" once serving; SIGTERM/SIGINT stop it gracefully.
Needs greeter_pb2 on PYTHONPATH (setup.sh's python_gen).
"""
import argparse
import logging
import math
import random
import signal
import sys
import threading
from concurrent import futures

import grpc

import greeter_pb2
import greeter_pb2_grpc


class Greeter(greeter_pb2_grpc.GreeterServicer):
    def __init__(self, ticks, interval):
        self.ticks, self.interval = ticks, interval

    def SayHello(self, request, context):
        return greeter_pb2.HelloReply(message="Hello " + request.name)

    def GetStockPrice(self, request, context):
        logging.info("Received subscription: %s", request.symbol)
        gone = threading.Event()
        context.add_callback(gone.set)  # wakes the pacing wait when the client leaves
        for i in range(self.ticks):
            if i and gone.wait(self.interval):
                return
            yield greeter_pb2.StockReply(symbol=request.symbol, price=500.0 + random.random() * 100)

    def RecordMetrics(self, request_iterator, context):
        total, count = 0.0, 0
        for m in request_iterator:
            # The proto contract (not the tutorial) rejects non-finite readings.
            if not math.isfinite(m.value):
                context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"metric value must be finite, got {m.value}")
            total += m.value
            count += 1
        return greeter_pb2.MetricSummary(count=count, average=total / count if count else 0.0)

    def Chat(self, request_iterator, context):
        for m in request_iterator:
            yield greeter_pb2.ChatMessage(user="Server", message="Server received: " + m.message)


def credentials(args):
    def read(path):
        with open(path, "rb") as f:
            return f.read()

    ca = read(args.tls_client_ca) if args.tls_client_ca else None
    return grpc.ssl_server_credentials(
        [(read(args.tls_key), read(args.tls_cert))], root_certificates=ca, require_client_auth=ca is not None)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0, help="0: pick a free port")
    p.add_argument("--ticks", type=int, default=5, help="ticks sent per GetStockPrice call")
    p.add_argument("--interval", type=float, default=0.5, help="pause between two ticks, seconds")
    p.add_argument("--tls-cert", default="")
    p.add_argument("--tls-key", default="")
    p.add_argument("--tls-client-ca", default="", help="require client certificates signed by this CA")
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=16))
    greeter_pb2_grpc.add_GreeterServicer_to_server(Greeter(args.ticks, args.interval), server)
    target = f"{args.host}:{args.port}"
    try:
        if args.tls_cert or args.tls_key:
            port = server.add_secure_port(target, credentials(args))
        else:
            port = server.add_insecure_port(target)
    except (OSError, RuntimeError) as e:  # grpcio raises RuntimeError when it cannot bind
        sys.exit(f"Failed to listen on {target}: {e}")
    server.start()
    print(f"LISTENING {port}", flush=True)

    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    while not stop.wait(3600):
        pass
    logging.info("shutting down")
    server.stop(grace=5).wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
