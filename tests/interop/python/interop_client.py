"""Run the tutorial's four calls against a Greeter server and check every result.

Same interface as the Go interop-client. Exit codes: 0 all OK, 1 a reply differs from
the contract (MISMATCH line on stderr), 2 an RPC failed (RPC ERROR line), 3 bad local
setup (e.g. TLS files). Needs greeter_pb2 on PYTHONPATH (setup.sh's python_gen).
"""
import argparse
import json
import os
import queue
import sys

# gRPC C-core would log TLS/transport errors to stderr too; keep stderr to our one line.
os.environ.setdefault("GRPC_VERBOSITY", "NONE")
import grpc  # noqa: E402

import greeter_pb2  # noqa: E402
import greeter_pb2_grpc  # noqa: E402


def q(s):
    """Quote like Go's %q, so both clients print identical MISMATCH lines."""
    return json.dumps(s, ensure_ascii=False)


class Mismatch(Exception):
    pass


class CallFailed(Exception):
    def __init__(self, call, err):
        super().__init__(call)
        self.call, self.err = call, err


def rpc(call, fn, *args, **kwargs):
    try:
        return fn(*args, **kwargs)
    except grpc.RpcError as e:
        raise CallFailed(call, e) from e


def unary(stub, timeout):
    print("--- 1. Unary ---")
    res = rpc("SayHello", stub.SayHello, greeter_pb2.HelloRequest(name="Python"), timeout=timeout, metadata=METADATA)
    print(f"Response: {res.message}")
    if res.message != "Hello Python":
        raise Mismatch(f'SayHello: want "Hello Python", got {q(res.message)}')


def server_streaming(stub, timeout, ticks):
    print("--- 2. Server Streaming ---")
    stream = rpc("GetStockPrice", stub.GetStockPrice, greeter_pb2.StockRequest(symbol="TSMC"), timeout=timeout, metadata=METADATA)
    n = 0
    try:
        for stock in stream:
            n += 1
            print(f"Stock: {stock.symbol}, Price: {stock.price:.2f}")
            if stock.symbol != "TSMC":
                raise Mismatch(f'GetStockPrice tick {n}: want symbol "TSMC", got {q(stock.symbol)}')
            if not 500 <= stock.price < 600:
                raise Mismatch(f"GetStockPrice tick {n}: want price in [500,600), got {stock.price!r}")
    except grpc.RpcError as e:
        raise CallFailed("GetStockPrice", e) from e
    if n != ticks:
        raise Mismatch(f"GetStockPrice: want {ticks} ticks, got {n}")


def client_streaming(stub, timeout):
    print("--- 3. Client Streaming ---")
    values = [30.5, 31.0, 30.8]
    summary = rpc("RecordMetrics", stub.RecordMetrics,
                  (greeter_pb2.Metric(value=v) for v in values), timeout=timeout, metadata=METADATA)
    print(f"Statistics: Count {summary.count}, Average {summary.average:.2f}")
    if summary.count != len(values):
        raise Mismatch(f"RecordMetrics: want count {len(values)}, got {summary.count}")
    mean = (values[0] + values[1] + values[2]) / 3
    if not abs(summary.average - mean) <= 1e-9:  # also catches NaN
        raise Mismatch(f"RecordMetrics: want average {mean!r} (±1e-9), got {summary.average!r}")


def chat(stub, timeout):
    """Ping-pong: send one message, wait for its reply, so per-message answers are proven."""
    print("--- 4. Chat ---")
    outbox = queue.Queue()

    def requests():
        while (msg := outbox.get()) is not None:
            yield msg

    call = rpc("Chat", stub.Chat, requests(), timeout=timeout, metadata=METADATA)
    try:
        for i, text in enumerate(["Hi from Python", "Streaming is cool"], 1):
            outbox.put(greeter_pb2.ChatMessage(user="Python", message=text))
            res = rpc("Chat", next, call, None)
            if res is None:
                raise Mismatch(f"Chat: want reply {i} to {q(text)}, got end of stream")
            print(f"(Receive) {res.user}: {res.message}")
            want = "Server received: " + text
            if (res.user, res.message) != ("Server", want):
                raise Mismatch(f'Chat reply {i}: want ("Server", {q(want)}), got ({q(res.user)}, {q(res.message)})')
        outbox.put(None)  # half-close
        extra = rpc("Chat", next, call, None)
        if extra is not None:
            raise Mismatch(f"Chat: want end of stream after 2 replies, got extra ({q(extra.user)}, {q(extra.message)})")
    finally:
        outbox.put(None)  # never leave the request thread blocked
        call.cancel()     # no-op once the call has finished


# Metadata sent with every call: the bearer token, when --token gives one.
METADATA = ()


def channel(args):
    if not args.tls_ca:
        return grpc.insecure_channel(args.addr)

    def read(path):
        with open(path, "rb") as f:
            return f.read()

    creds = grpc.ssl_channel_credentials(
        root_certificates=read(args.tls_ca),
        private_key=read(args.tls_key) if args.tls_key else None,
        certificate_chain=read(args.tls_cert) if args.tls_cert else None,
    )
    opts = [("grpc.ssl_target_name_override", args.tls_server_name)] if args.tls_server_name else []
    return grpc.secure_channel(args.addr, creds, options=opts)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--addr", default="localhost:50051")
    p.add_argument("--ticks", type=int, default=5, help="GetStockPrice ticks the server is expected to send")
    p.add_argument("--timeout", type=float, default=30.0, help="deadline of each call, seconds")
    p.add_argument("--tls-ca", default="", help="PEM CA of the server certificate (empty: plaintext)")
    p.add_argument("--tls-cert", default="", help="PEM client certificate for mutual TLS")
    p.add_argument("--tls-key", default="", help="PEM client key for mutual TLS")
    p.add_argument("--tls-server-name", default="", help="expected server name in its certificate")
    p.add_argument("--token", default="", help="bearer token sent with every call (authorization: Bearer ...)")
    args = p.parse_args()
    global METADATA
    METADATA = (("authorization", f"Bearer {args.token}"),) if args.token else ()

    try:
        ch = channel(args)
    except (OSError, ValueError) as e:
        print(f"SETUP ERROR TLS: {e}", file=sys.stderr)
        return 3
    with ch:
        stub = greeter_pb2_grpc.GreeterStub(ch)
        try:
            unary(stub, args.timeout)
            server_streaming(stub, args.timeout, args.ticks)
            client_streaming(stub, args.timeout)
            chat(stub, args.timeout)
        except Mismatch as m:
            sys.stdout.flush()
            print(f"MISMATCH {m}", file=sys.stderr)
            return 1
        except CallFailed as f:
            sys.stdout.flush()
            code = f.err.code()
            print(f"RPC ERROR {f.call}: code={code.value[0]} ({code.name}) message={q(f.err.details() or '')}",
                  file=sys.stderr)
            return 2
    print("OK all four patterns")
    return 0


if __name__ == "__main__":
    sys.exit(main())
