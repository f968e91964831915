#!/usr/bin/env python3
"""What a compressing server sends, read off the wire: one SayHello with a 4,000-byte name
(its reply compresses well) over raw HTTP/2, the request saying which encodings the client
accepts (`--accept`), and one JSON line: the reply's `grpc-encoding` and
`grpc-accept-encoding` headers, each message's compressed flag (the byte before its length),
the reply's bytes on the wire, and the reply inflated when flagged.

    python compression_wire.py --addr 127.0.0.1:50051 --accept identity,gzip

Uses hostile.py's HTTP/2 connection (the `h2` library on a plain socket); bounded the same way.
"""
import argparse
import gzip
import json
import os
import signal
import sys
import zlib

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from hostile import Conn, grpc_frame, header, hello_request, request_headers, stream_result, string_fields  # noqa: E402

NAME = b"a" * 4000


def compressed_reply(addr, accept):
    conn = Conn(addr)
    try:
        sid = conn.open(request_headers(addr, extra=[("grpc-accept-encoding", accept)]))
        conn.send(sid, grpc_frame(hello_request(NAME)), end_stream=True)
        conn.wait(sid)
        result = stream_result(conn, sid)
        st = conn.streams[sid]
        encoding = header(st.headers, "grpc-encoding")
        flags, reply, i = [], None, 0
        while i + 5 <= len(st.data):
            n = int.from_bytes(st.data[i + 1 : i + 5], "big")
            flags.append(st.data[i])
            body = st.data[i + 5 : i + 5 + n]
            if st.data[i] == 1:
                body = gzip.decompress(body) if encoding == "gzip" else zlib.decompress(body)
            reply = string_fields(body).get(1)
            i += 5 + n
        result.pop("frames_after_end", None)
        result.pop("reply", None)  # 4,006 bytes; reply_ok says whether it was right
        result.update(grpc_encoding=encoding, grpc_accept_encoding=header(st.headers, "grpc-accept-encoding"),
                      message_flags=flags, body_bytes=len(st.data),
                      reply_ok=reply == "Hello " + NAME.decode())
        return result
    finally:
        conn.close()


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--addr", required=True)
    p.add_argument("--accept", required=True, help="the request's grpc-accept-encoding")
    args = p.parse_args()
    signal.alarm(60)
    print(json.dumps(compressed_reply(args.addr, args.accept)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
