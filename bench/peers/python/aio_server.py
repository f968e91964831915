"""The tutorial's Greeter on Python grpcio's asyncio API, for bench/run --scale.

The Python peer of the ordinary benchmark (tests/interop/python/interop_server.py) runs each
call on one of 16 threads, so it holds at most 16 streams at once; a scale curve needs
10,000, which in Python means grpc.aio: every call a coroutine on one event loop.
Same flags as interop_server.py (--port, --ticks, --interval); prints "LISTENING <port>".
Needs greeter_pb2 on PYTHONPATH (tests/interop/setup.sh's python_gen).
"""
import argparse
import asyncio
import math
import random
import signal
import sys

import grpc

import greeter_pb2
import greeter_pb2_grpc


class Greeter(greeter_pb2_grpc.GreeterServicer):
    def __init__(self, ticks, interval):
        self.ticks, self.interval = ticks, interval

    async def SayHello(self, request, context):
        return greeter_pb2.HelloReply(message="Hello " + request.name)

    async def GetStockPrice(self, request, context):
        for i in range(self.ticks):
            if i:
                await asyncio.sleep(self.interval)  # cancelled when the client leaves
            yield greeter_pb2.StockReply(symbol=request.symbol, price=500.0 + random.random() * 100)

    async def RecordMetrics(self, request_iterator, context):
        total, count = 0.0, 0
        async for m in request_iterator:
            if not math.isfinite(m.value):
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"metric value must be finite, got {m.value}")
            total += m.value
            count += 1
        return greeter_pb2.MetricSummary(count=count, average=total / count if count else 0.0)

    async def Chat(self, request_iterator, context):
        async for m in request_iterator:
            yield greeter_pb2.ChatMessage(user="Server", message="Server received: " + m.message)


async def serve(args):
    server = grpc.aio.server()
    greeter_pb2_grpc.add_GreeterServicer_to_server(Greeter(args.ticks, args.interval), server)
    port = server.add_insecure_port(f"{args.host}:{args.port}")
    await server.start()
    print(f"LISTENING {port}", flush=True)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    await stop.wait()
    await server.stop(grace=1)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--ticks", type=int, default=5)
    p.add_argument("--interval", type=float, default=0.5)
    asyncio.run(serve(p.parse_args()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
