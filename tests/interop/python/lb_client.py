"""Call SayHello through one channel over several replicas, configured the way grpcio's docs
say: the service config (round_robin, healthCheckConfig, a retry policy) as the
`grpc.service_config` channel option. C-core resolves `ipv4:a:p,b:p,...` itself.

    python lb_client.py --addr ipv4:127.0.0.1:5001,127.0.0.1:5002 --service-config '{...}' --calls 300
    python lb_client.py --addr ... --service-config '{...}' --for 4s --workers 4

Same interface and output as the Go lb-client: "CALLS ok=N failed=M", each distinct failure
as "FAILED <status>" on stderr. Exit codes: 0 all OK, 2 some call failed.
"""
import argparse
import os
import sys
import threading
import time

os.environ.setdefault("GRPC_VERBOSITY", "NONE")
import grpc  # noqa: E402

import greeter_pb2  # noqa: E402
import greeter_pb2_grpc  # noqa: E402


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--addr", default="localhost:50051")
    p.add_argument("--service-config", default="", help="service config (JSON)")
    p.add_argument("--calls", type=int, default=0, help="make this many calls, one after another")
    p.add_argument("--for", dest="run_for", type=lambda v: float(v.removesuffix("s")), default=0,
                   help="or: call back to back for this long (seconds, e.g. 4 or 4s)")
    p.add_argument("--until-eof", action="store_true", help="or: call back to back until stdin is closed")
    p.add_argument("--warmup", action="store_true",
                   help="before --calls: call with a 777-byte name until stdin says a line")
    p.add_argument("--workers", type=int, default=1, help="concurrent callers (with --for or --until-eof)")
    p.add_argument("--timeout", type=float, default=10.0, help="deadline of each call, seconds")
    p.add_argument("--min-resolution-interval", type=lambda v: float(v.removesuffix("s")), default=0,
                   help="dns: targets: least time between two resolutions, seconds (C-core's default 30)")
    args = p.parse_args()

    options = [("grpc.service_config", args.service_config)] if args.service_config else []
    if args.min_resolution_interval:
        options.append(("grpc.dns_min_time_between_resolutions_ms", int(args.min_resolution_interval * 1000)))
    lock = threading.Lock()
    counts = {"ok": 0, "failed": 0}
    seen = set()

    with grpc.insecure_channel(args.addr, options=options) as channel:
        stub = greeter_pb2_grpc.GreeterStub(channel)

        def call(name):
            try:
                reply = stub.SayHello(greeter_pb2.HelloRequest(name=name), timeout=args.timeout)
                what = None if reply.message == "Hello " + name else f"wrong reply {reply.message!r}"
            except grpc.RpcError as e:
                what = f"{e.code().name}: {e.details()}"
            with lock:
                counts["failed" if what else "ok"] += 1
                if what and what not in seen:
                    seen.add(what)
                    print(f"FAILED {what}", file=sys.stderr)

        # stdin's next line (or its end), as an event the calls stop or go on at.
        stdin_says = threading.Event()
        threading.Thread(target=lambda: (sys.stdin.readline(), stdin_says.set()), daemon=True).start()

        if args.run_for > 0 or args.until_eof:
            deadline = time.monotonic() + args.run_for

            def done():
                return stdin_says.is_set() if args.until_eof else time.monotonic() >= deadline

            def worker(w):
                i = 0
                while not done():
                    call(f"Python {w}.{i}")
                    i += 1

            threads = [threading.Thread(target=worker, args=(w,)) for w in range(args.workers)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
        else:
            # A name of a length no counted call has marks the warm-up calls in the servers'
            # logs: they go on until every replica is connected (the test watches, then says so).
            while args.warmup and not stdin_says.is_set():
                call("w" * 777)
            with lock:  # only the counted calls are reported
                counts.update(ok=0, failed=0)
            for i in range(args.calls):
                call(f"Python {i}")

    print(f"CALLS ok={counts['ok']} failed={counts['failed']}")
    return 2 if counts["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
