#!/usr/bin/env python3
"""Counts the messages of streaming calls, call by call; bench.py's check after each measured run.

ghz reports a stream as OK however many messages it carried, so messages/s = calls/s x 1000
holds only if every call really carried 1000. This client makes CALLS calls of METHOD (at the
load's concurrency, over as many connections), each with the ghz data file's messages, and
prints one JSON object per call: messages it sent, messages it received, and for RecordMetrics
the server's own MetricSummary.count. It only counts; bench.py compares with what was asked.

Runs in tests/interop's venv (pinned grpcio), with its python_gen stubs on PYTHONPATH.
"""
import argparse
import json
import os
import sys
from concurrent.futures import ThreadPoolExecutor

os.environ.setdefault("GRPC_VERBOSITY", "NONE")  # C-core's own log lines are not ours to report
import grpc  # noqa: E402
from google.protobuf import json_format  # noqa: E402

import greeter_pb2  # noqa: E402
import greeter_pb2_grpc  # noqa: E402

REQUEST = {"GetStockPrice": greeter_pb2.StockRequest, "RecordMetrics": greeter_pb2.Metric,
           "Chat": greeter_pb2.ChatMessage}


def one_call(stub, method, requests, timeout):
    counts = {"sent": 0, "received": 0, "counted": None, "error": None}

    def sending():  # counts what grpc actually took from us, not what we had to offer
        for r in requests:
            counts["sent"] += 1
            yield r

    try:
        if method == "GetStockPrice":
            counts["sent"] = 1
            for _ in stub.GetStockPrice(requests[0], timeout=timeout):
                counts["received"] += 1
        elif method == "RecordMetrics":
            summary = stub.RecordMetrics(sending(), timeout=timeout)
            counts["received"], counts["counted"] = 1, summary.count
        elif method == "Chat":
            for _ in stub.Chat(sending(), timeout=timeout):
                counts["received"] += 1
    except grpc.RpcError as e:
        counts["error"] = f"{e.code().name}: {e.details()}"
    return counts


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--target", required=True, help="host:port")
    ap.add_argument("--method", required=True, choices=sorted(REQUEST))
    ap.add_argument("--data", required=True, help="ghz's -D file: one JSON message, or a list of them")
    ap.add_argument("--calls", type=int, default=8)
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--connections", type=int, default=2)
    ap.add_argument("--timeout", type=float, default=60.0, help="deadline of each call, seconds")
    args = ap.parse_args()
    with open(args.data) as f:
        data = json.load(f)
    requests = [json_format.ParseDict(d, REQUEST[args.method]()) for d in (data if isinstance(data, list) else [data])]
    # A local subchannel pool per channel: otherwise grpcio shares one connection among them.
    channels = [grpc.insecure_channel(args.target, options=[("grpc.use_local_subchannel_pool", 1)])
                for _ in range(args.connections)]
    stubs = [greeter_pb2_grpc.GreeterStub(ch) for ch in channels]
    with ThreadPoolExecutor(max_workers=args.concurrency) as pool:
        results = list(pool.map(lambda i: one_call(stubs[i % len(stubs)], args.method, requests, args.timeout),
                                range(args.calls)))
    for ch in channels:
        ch.close()
    json.dump(results, sys.stdout)
    print()


if __name__ == "__main__":
    main()
