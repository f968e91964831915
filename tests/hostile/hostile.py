#!/usr/bin/env python3
"""Hostile input for a gRPC server, over raw HTTP/2 (the `h2` library on a plain socket).

    python hostile.py --addr 127.0.0.1:50051 --case NAME     (--list prints the case names)
    python hostile.py --addr 127.0.0.1:50051 --loop 10 --cases NAME,NAME,...

Runs ONE case against a live server and prints one JSON line on stdout describing what came
back; with --loop, runs the cases in turn for that many seconds and prints, for each case,
the distinct answers it got (`answer()`'s fields) and how often. The common fields are

    case, http_status, content_type, grpc_status, grpc_message,
    stream_reset     RST_STREAM error code the server sent on the case's stream, or null
    goaway           GOAWAY error code the server sent on the connection, or null
    goaway_debug     GOAWAY debug data (text), or null
    connection_closed  the server closed the TCP connection (EOF/reset) before we did
    send_stalled     the server read nothing of what we sent for 5 s (we stopped sending)
    reply            the HelloReply.message of a SayHello reply, or null
    followup         when the connection survived: a good SayHello on the SAME connection,
                     {"grpc_status": .., "reply": ..}, else null
    header_blocks    how many header blocks the server sent on the stream (2 = headers +
                     trailers; more means it repeated itself)
    distinct_header_blocks  how many of those blocks differ (1 = one block sent again and again)
    frames_after_end frames the server sent on the stream after ending or resetting it
    frames           every frame received on the connection, in order ("RST_STREAM s1 CANCEL")

plus case-specific fields. HTTP/2 error codes are numbers (RFC 9113 §7: 0 NO_ERROR,
1 PROTOCOL_ERROR, 2 INTERNAL_ERROR, 7 REFUSED_STREAM, 8 CANCEL, 11 ENHANCE_YOUR_CALM, ...).

Bounded: every socket read has a 5 s timeout, every case has a deadline, and an alarm ends
the program after 60 s (plus --loop's seconds) whatever happens. Meant for loopback servers only.
"""

import argparse
import json
import signal
import socket
import sys
import time
import urllib.parse

import h2.config
import h2.connection
import h2.exceptions
import hpack
from hyperframe.frame import DataFrame, PingFrame, SettingsFrame, WindowUpdateFrame

SOCKET_TIMEOUT = 5.0
CASE_DEADLINE = 5.0

SAY_HELLO = "/greeter.Greeter/SayHello"
RECORD_METRICS = "/greeter.Greeter/RecordMetrics"
CHAT = "/greeter.Greeter/Chat"
STOCK = "/greeter.Greeter/GetStockPrice"

CANCEL = 8
REFUSED_STREAM = 7
ERROR_CODES = {
    0: "NO_ERROR", 1: "PROTOCOL_ERROR", 2: "INTERNAL_ERROR", 3: "FLOW_CONTROL_ERROR",
    4: "SETTINGS_TIMEOUT", 5: "STREAM_CLOSED", 6: "FRAME_SIZE_ERROR", 7: "REFUSED_STREAM",
    8: "CANCEL", 9: "COMPRESSION_ERROR", 10: "CONNECT_ERROR", 11: "ENHANCE_YOUR_CALM",
    12: "INADEQUATE_SECURITY", 13: "HTTP_1_1_REQUIRED",
}
MAX_CONCURRENT_STREAMS = 3  # SETTINGS codes
INITIAL_WINDOW_SIZE = 4
FRAME_TYPES = {
    0: "DATA", 1: "HEADERS", 2: "PRIORITY", 3: "RST_STREAM", 4: "SETTINGS", 5: "PUSH_PROMISE",
    6: "PING", 7: "GOAWAY", 8: "WINDOW_UPDATE", 9: "CONTINUATION",
}


# --- protobuf and gRPC framing, by hand ------------------------------------------------------


def varint(n):
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def string_field(number, value):
    """A length-delimited field (wire type 2)."""
    return varint(number << 3 | 2) + varint(len(value)) + value


def hello_request(name):
    return string_field(1, name)


def chat_message(user, message):
    return string_field(1, user) + string_field(2, message)


def grpc_frame(payload, compressed=False, length=None):
    """A Length-Prefixed-Message; `length` overrides the true length in the prefix."""
    if length is None:
        length = len(payload)
    return bytes([1 if compressed else 0]) + length.to_bytes(4, "big") + payload


def read_varint(buf, i):
    shift = result = 0
    while True:
        byte = buf[i]
        i += 1
        result |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return result, i


def string_fields(msg):
    """{field number: text} of the length-delimited fields of a protobuf message."""
    fields, i = {}, 0
    try:
        while i < len(msg):
            key, i = read_varint(msg, i)
            number, wire = key >> 3, key & 7
            if wire == 2:
                n, i = read_varint(msg, i)
                fields[number] = msg[i : i + n].decode("utf-8", "replace")
                i += n
            elif wire == 0:
                _, i = read_varint(msg, i)
            elif wire == 1:
                i += 8
            elif wire == 5:
                i += 4
            else:
                break
    except IndexError:
        pass
    return fields


def split_messages(data):
    """The Length-Prefixed-Messages in a response body (a trailing partial one is dropped)."""
    out, i = [], 0
    while i + 5 <= len(data):
        n = int.from_bytes(data[i + 1 : i + 5], "big")
        if i + 5 + n > len(data):
            break
        out.append(data[i + 5 : i + 5 + n])
        i += 5 + n
    return out


def request_headers(addr, path=SAY_HELLO, replace=None, drop=(), extra=()):
    """A good gRPC request's headers, in the spec's order, then edited."""
    headers = [
        (":method", "POST"),
        (":scheme", "http"),
        (":path", path),
        (":authority", addr),
        ("te", "trailers"),
        ("content-type", "application/grpc"),
        ("user-agent", "greeter-hostile/1"),
    ]
    replace = replace or {}
    headers = [(k, replace.get(k, v)) for k, v in headers if k not in drop]
    return headers + list(extra)


# --- one HTTP/2 client connection ------------------------------------------------------------


class Stream:
    def __init__(self):
        self.blocks = []  # every header block the server sent on the stream, decoded
        self.data = b""
        self.ended = False  # the server set END_STREAM
        self.reset = None  # the first RST_STREAM error code the server sent
        self.after_end = []  # frames the server sent after it ended or reset the stream

    @property
    def headers(self):
        return self.blocks[0] if self.blocks else None

    @property
    def trailers(self):
        return self.blocks[1] if len(self.blocks) > 1 else None

    @property
    def done(self):
        return self.ended or self.reset is not None


class Conn:
    """One HTTP/2 client connection.

    h2 encodes and sends. What the server sends is parsed here, frame by frame, with h2's own
    HPACK decoder and no state machine: the point is to record whatever a server does, including
    frames a strict client would turn into a connection error. SETTINGS and PING are
    acknowledged and received DATA is credited back, so the server is never stuck.
    """

    def __init__(self, addr, ack_settings=True):
        """With ack_settings=False the connection never ACKs the server's SETTINGS and sends
        its first request right after the preface, before the server's SETTINGS arrive."""
        host, port = addr.rsplit(":", 1)
        self.addr = addr
        self.sock = socket.create_connection((host, int(port)), timeout=SOCKET_TIMEOUT)
        config = h2.config.H2Configuration(
            client_side=True,
            header_encoding=None,
            validate_outbound_headers=False,
            normalize_outbound_headers=False,
        )
        self.h2 = h2.connection.H2Connection(config=config)
        self.decoder = hpack.Decoder()
        self.decoder.max_header_list_size = 1 << 24
        self.streams = {}
        self.goaway = None
        self.goaway_debug = None
        self.closed = False  # by the server
        self.send_stalled = False  # the server stopped reading what we send
        self.server_settings = None  # the server's first SETTINGS frame, {code: value}
        self.pings_acked = 0
        self.rbuf = b""
        self.block = None  # (stream id, END_STREAM, fragments) while CONTINUATIONs follow
        self.frames = []  # a log of every frame received
        self.credit = {0: 65535}  # what we may still send: connection (0) and per stream
        self.ack_settings = ack_settings
        self.h2.initiate_connection()
        self.flush()
        if ack_settings:
            self.pump(lambda: self.server_settings is not None)

    @property
    def alive(self):
        return not self.closed and not self.send_stalled and self.goaway is None

    def write(self, data):
        """Sends all of `data`, waiting for room in the socket's send buffer.

        `pump(timeout=0)` leaves the socket non-blocking; a `sendall` in that state raises
        EAGAIN as soon as the kernel's send buffer is full, which happens whenever the server
        reads a little slower than we write (a busy machine). That error once counted as "the
        server closed the connection" and failed length_prefix_4gib_streaming at random, so
        every write blocks (up to SOCKET_TIMEOUT), and only a real EOF/reset counts as closed.
        """
        if not data or self.closed or self.send_stalled:
            return
        self.sock.settimeout(SOCKET_TIMEOUT)
        try:
            self.sock.sendall(data)
        except socket.timeout:
            # The server did not read anything for SOCKET_TIMEOUT: a behaviour of its own,
            # reported apart from a close. Part of a frame may be out, so we send no more.
            self.send_stalled = True
        except OSError:
            self.closed = True

    def flush(self):
        self.write(self.h2.data_to_send())

    def open(self, headers, end_stream=False):
        sid = self.h2.get_next_available_stream_id()
        self.streams[sid] = Stream()
        self.h2.send_headers(sid, headers, end_stream=end_stream)
        self.flush()
        return sid

    def send(self, sid, data, end_stream=False):
        self.h2.send_data(sid, data, end_stream=end_stream)
        self.flush()

    def pump(self, until, timeout=CASE_DEADLINE):
        """Reads and handles frames until `until()` holds, the connection ends or time is up."""
        deadline = time.monotonic() + timeout
        while not until():
            if self.closed:
                return False
            left = deadline - time.monotonic()
            if left <= 0 and timeout > 0:
                return False
            self.sock.settimeout(min(left, SOCKET_TIMEOUT) if timeout > 0 else 0.0)
            try:
                data = self.sock.recv(65536)
            except (socket.timeout, BlockingIOError):
                return False
            except OSError:
                self.closed = True
                return False
            if not data:
                self.closed = True
                return until()
            self.rbuf += data
            while len(self.rbuf) >= 9:
                length = int.from_bytes(self.rbuf[:3], "big")
                if len(self.rbuf) < 9 + length:
                    break
                ftype, flags = self.rbuf[3], self.rbuf[4]
                sid = int.from_bytes(self.rbuf[5:9], "big") & 0x7FFFFFFF
                payload = self.rbuf[9 : 9 + length]
                self.rbuf = self.rbuf[9 + length :]
                self.handle(ftype, flags, sid, payload)
        return True

    def handle(self, ftype, flags, sid, payload):
        name = FRAME_TYPES.get(ftype, f"TYPE{ftype}")
        entry = f"{name} s{sid}"
        st = self.streams.get(sid)
        if st is not None and st.done and ftype not in (8,):  # WINDOW_UPDATE after the end is fine
            st.after_end.append(name)
        if ftype == 0:  # DATA
            padded = flags & 0x8
            body = payload[1 : len(payload) - payload[0]] if padded else payload
            if st is not None:
                st.data += body
            if flags & 0x1:
                entry += " END_STREAM"
                if st is not None:
                    st.ended = True
            if payload:
                credit = WindowUpdateFrame(0)
                credit.window_increment = len(payload)
                frames = credit.serialize()
                if not flags & 0x1:
                    credit = WindowUpdateFrame(sid)
                    credit.window_increment = len(payload)
                    frames += credit.serialize()
                self.write(frames)
        elif ftype in (1, 9):  # HEADERS, CONTINUATION
            if ftype == 1:
                fragment = payload
                if flags & 0x8:  # PADDED
                    fragment = fragment[1 : len(fragment) - fragment[0]]
                if flags & 0x20:  # PRIORITY
                    fragment = fragment[5:]
                self.block = (sid, bool(flags & 0x1), [fragment])
                if flags & 0x1:
                    entry += " END_STREAM"
            elif self.block is not None:
                self.block[2].append(payload)
            if flags & 0x4 and self.block is not None:  # END_HEADERS
                block_sid, end_stream, fragments = self.block
                self.block = None
                headers = [(k.decode("latin-1"), v.decode("latin-1"))
                           for k, v in self.decoder.decode(b"".join(fragments), raw=True)]
                st = self.streams.get(block_sid)
                if st is not None:
                    st.blocks.append(headers)
                    if end_stream:
                        st.ended = True
        elif ftype == 8:  # WINDOW_UPDATE
            self.credit[sid] = self.credit.get(sid, self.initial_window()) + int.from_bytes(payload[:4], "big")
        elif ftype == 3:  # RST_STREAM
            code = int.from_bytes(payload[:4], "big")
            entry += f" {ERROR_CODES.get(code, code)}"
            if st is not None and st.reset is None:
                st.reset = code
        elif ftype == 4:  # SETTINGS
            if flags & 0x1:
                entry += " ACK"
            else:
                settings = {int.from_bytes(payload[i : i + 2], "big"): int.from_bytes(payload[i + 2 : i + 6], "big")
                            for i in range(0, len(payload) - 5, 6)}
                if self.server_settings is None:
                    self.server_settings = settings
                if self.ack_settings:
                    self.write(SettingsFrame(0, flags=["ACK"]).serialize())
        elif ftype == 6:  # PING
            if flags & 0x1:
                entry += " ACK"
                self.pings_acked += 1
            else:
                self.write(PingFrame(0, flags=["ACK"], opaque_data=payload).serialize())
        elif ftype == 7:  # GOAWAY
            code = int.from_bytes(payload[4:8], "big")
            entry += f" {ERROR_CODES.get(code, code)}"
            if self.goaway is None:
                self.goaway = code
                self.goaway_debug = payload[8:].decode("latin-1") or None
        self.frames.append(entry)

    def initial_window(self):
        return (self.server_settings or {}).get(INITIAL_WINDOW_SIZE, 65535)

    def send_raw_data(self, sid, data, end_stream=False):
        """DATA frames written by hand (h2 would not let its window run past what it saw),
        within the server's flow-control windows. Returns how many bytes were sent; less than
        len(data) when the server stopped granting window for CASE_DEADLINE or ended the stream.
        (That wait was 1 s once; on a loaded 2-core machine the server's thread can be off the CPU
        for longer than that, and a slow grant is not a refusal.)"""
        sent = 0
        while sent < len(data) or (end_stream and sent == len(data) == 0):
            stream = self.streams[sid]
            window = min(self.credit[0], self.credit.get(sid, self.initial_window()), 16384)
            if stream.done or not self.alive:
                break
            if window <= 0:
                if not self.pump(lambda: min(self.credit[0], self.credit.get(sid, self.initial_window())) > 0
                                 or stream.done, timeout=CASE_DEADLINE):
                    break
                continue
            chunk = data[sent : sent + window]
            last = end_stream and sent + len(chunk) == len(data)
            frame = DataFrame(sid, data=chunk, flags=["END_STREAM"] if last else [])
            self.write(frame.serialize())
            self.credit[0] -= len(chunk)
            self.credit[sid] = self.credit.get(sid, self.initial_window()) - len(chunk)
            sent += len(chunk)
            self.pump(lambda: False, timeout=0)  # take in what the server has said so far
            if last:
                break
        return sent

    def ping(self):
        """PING and wait for its ACK: the server has read everything we sent before it."""
        want = self.pings_acked + 1
        self.h2.ping(b"hostile!")
        self.flush()
        return self.pump(lambda: self.pings_acked >= want)

    def wait(self, sid, timeout=CASE_DEADLINE):
        """Waits until stream `sid` ends, then a PING round trip more, so that frames the
        server sends right after the end (RST_STREAM, repeats) are seen too."""
        done = self.pump(lambda: self.streams[sid].done, timeout)
        if done and self.alive:
            self.ping()
        return done

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


def decode_headers(headers):
    return [(k.decode("latin-1"), v.decode("latin-1")) for k, v in headers]


def header(headers, name):
    for k, v in headers or ():
        if k == name:
            return v
    return None


def stream_result(conn, sid, path=SAY_HELLO):
    """The common fields for stream `sid`."""
    st = conn.streams[sid]
    heads = [h for block in st.blocks for h in block]
    status = header(st.headers, ":status")
    grpc_status = header(heads, "grpc-status")
    grpc_message = header(heads, "grpc-message")
    messages = split_messages(st.data)
    reply = None
    if path == SAY_HELLO and messages:
        reply = string_fields(messages[0]).get(1)
    return {
        "http_status": int(status) if status is not None else None,
        "content_type": header(st.headers, "content-type"),
        "grpc_status": int(grpc_status) if grpc_status is not None else None,
        "grpc_message": urllib.parse.unquote(grpc_message) if grpc_message is not None else None,
        "stream_ended": st.ended,
        "stream_reset": st.reset,
        "reply": reply,
        "response_messages": len(messages),
        "header_blocks": len(st.blocks),
        "distinct_header_blocks": len({tuple(block) for block in st.blocks}),
        "frames_after_end": st.after_end,
    }


def conn_result(conn):
    return {
        "goaway": conn.goaway,
        "goaway_debug": conn.goaway_debug,
        "connection_closed": conn.closed,
        "send_stalled": conn.send_stalled,
        "frames": conn.frames,
    }


def followup(conn):
    """A good SayHello on the same connection, if the connection still takes streams."""
    if not conn.alive:
        return None
    try:
        sid = conn.open(request_headers(conn.addr))
        conn.send(sid, grpc_frame(hello_request(b"followup")), end_stream=True)
    except h2.exceptions.ProtocolError as e:
        return {"error": f"{type(e).__name__}: {e}"}
    conn.wait(sid)
    r = stream_result(conn, sid)
    return {"grpc_status": r["grpc_status"], "reply": r["reply"], "stream_reset": r["stream_reset"]}


# --- the cases ------------------------------------------------------------------------------


def one_call(addr, headers, body, end_stream=True, path=SAY_HELLO, ack_settings=True):
    """Opens a connection, sends one request, waits for its end, then a followup call."""
    conn = Conn(addr, ack_settings=ack_settings)
    try:
        sid = conn.open(headers)
        if body is not None:
            conn.send(sid, body, end_stream=end_stream)
        elif end_stream:
            conn.h2.end_stream(sid)
            conn.flush()
        conn.wait(sid)
        result = stream_result(conn, sid, path)
        result.update(conn_result(conn))
        result["followup"] = followup(conn)
        result.update(conn_result(conn))
        return result
    finally:
        conn.close()


GOOD_BODY = grpc_frame(hello_request(b"hostile"))


def case_good_call(addr):
    """The control: a well-formed SayHello."""
    return one_call(addr, request_headers(addr), GOOD_BODY)


def case_content_type_json(addr):
    return one_call(addr, request_headers(addr, replace={"content-type": "application/json"}), GOOD_BODY)


def case_method_get(addr):
    return one_call(addr, request_headers(addr, replace={":method": "GET"}), GOOD_BODY)


def case_missing_te(addr):
    return one_call(addr, request_headers(addr, drop={"te"}), GOOD_BODY)


def timeout_headers(addr, value):
    # The spec wants grpc-timeout right after the reserved headers.
    headers = request_headers(addr)
    return headers[:4] + [("grpc-timeout", value)] + headers[4:]


def case_timeout_not_a_number(addr):
    return one_call(addr, timeout_headers(addr, "abc"), GOOD_BODY)


def case_timeout_too_many_digits(addr):
    """11 digits; the spec allows at most 8."""
    return one_call(addr, timeout_headers(addr, "99999999999S"), GOOD_BODY)


def case_length_prefix_beyond_body(addr):
    """The prefix announces 1000 bytes, 9 follow, then END_STREAM."""
    payload = hello_request(b"hostile")
    return one_call(addr, request_headers(addr), grpc_frame(payload, length=1000))


def case_length_prefix_4gib(addr):
    """The prefix announces 4 GiB - 1 (far above the 4 MiB receive limit), 9 bytes follow."""
    payload = hello_request(b"hostile")
    return one_call(addr, request_headers(addr), grpc_frame(payload, length=0xFFFFFFFF))


BODY_MIB = 8  # --body-mib


def case_length_prefix_4gib_streaming(addr):
    """The prefix announces 4 GiB - 1, then body bytes keep coming (up to --body-mib MiB,
    default 8: twice the 4 MiB receive limit, as fast as flow control allows): does the
    server buffer them?"""
    body = grpc_frame(b"", length=0xFFFFFFFF) + b"\x00" * (BODY_MIB << 20)
    result = raw_call(addr, body, end_stream=False, wait=2.0)
    result["body_bytes_sent"] = max(0, result["body_bytes_sent"] - 5)
    return result


def raw_call(addr, body, end_stream, wait=CASE_DEADLINE):
    """Like `one_call`, with the body written by hand within the server's flow-control
    windows (for bodies larger than a window); `body_bytes_sent` says how much went out."""
    conn = Conn(addr)
    try:
        sid = conn.open(request_headers(addr))
        sent = conn.send_raw_data(sid, body, end_stream=end_stream)
        conn.wait(sid, timeout=wait)
        result = stream_result(conn, sid)
        result.update(conn_result(conn))
        result["body_bytes_sent"] = sent
        result["followup"] = followup(conn)
        result.update(conn_result(conn))
        return result
    finally:
        conn.close()


def case_truncated_message(addr):
    """The prefix says 5 bytes, 3 follow, then END_STREAM."""
    return one_call(addr, request_headers(addr), grpc_frame(b"\x0a\x03a", length=5))


def case_not_protobuf(addr):
    # 'n' (0x6e) is field 13 with wire type 6, which does not exist.
    return one_call(addr, request_headers(addr), grpc_frame(b"not protobuf at all"))


def case_invalid_utf8_name(addr):
    # name = C3 28: a two-byte UTF-8 lead byte followed by a non-continuation byte.
    return one_call(addr, request_headers(addr), grpc_frame(hello_request(b"\xc3\x28")))


def case_compressed_flag_without_encoding(addr):
    return one_call(addr, request_headers(addr), grpc_frame(hello_request(b"hostile"), compressed=True))


def case_unknown_encoding(addr):
    headers = request_headers(addr, extra=[("grpc-encoding", "snappy-x")])
    return one_call(addr, headers, grpc_frame(hello_request(b"hostile"), compressed=True))


def case_unary_no_message(addr):
    """SayHello with END_STREAM on its HEADERS: a unary call without its one request."""
    return one_call(addr, request_headers(addr), None)


def case_unary_two_messages(addr):
    """SayHello with two requests where the method takes one."""
    return one_call(addr, request_headers(addr), GOOD_BODY + GOOD_BODY)


def case_message_over_limit(addr):
    """SayHello whose one request is 4 MiB + 1 byte, complete: just over the receive limit."""
    name = b"x" * ((4 << 20) + 1 - 5)  # tag, a 4-byte varint length, the name
    return raw_call(addr, grpc_frame(string_field(1, name)), end_stream=True)


def case_deadline_1ms_stream(addr):
    """GetStockPrice with a deadline of 1 ms (`grpc-timeout: 1m`): it passes before any tick."""
    headers = timeout_headers(addr, "1m")
    headers = [(k, STOCK if k == ":path" else v) for k, v in headers]
    return one_call(addr, headers, grpc_frame(string_field(1, b"TSMC")), path=STOCK)


def case_unknown_service(addr):
    path = "/greeter.NoSuchService/SayHello"
    return one_call(addr, request_headers(addr, path=path), GOOD_BODY, path=path)


def case_unknown_method(addr):
    path = "/greeter.Greeter/NoSuchMethod"
    return one_call(addr, request_headers(addr, path=path), GOOD_BODY, path=path)


def case_header_value_64k(addr):
    """One custom header with a 64 KiB value (8 KiB is the spec's suggested limit)."""
    headers = request_headers(addr, extra=[("x-hostile", "a" * 65536)])
    result = one_call(addr, headers, GOOD_BODY)
    result["header_bytes"] = 65536 + len("x-hostile")
    return result


def case_header_value_64k_before_settings_ack(addr):
    """The 64 KiB header, sent right after the preface on a connection that never ACKs the
    server's SETTINGS (which is where a server announces its header-list limit)."""
    headers = request_headers(addr, extra=[("x-hostile", "a" * 65536)])
    result = one_call(addr, headers, GOOD_BODY, ack_settings=False)
    result["header_bytes"] = 65536 + len("x-hostile")
    return result


def case_many_headers(addr):
    """1000 small custom headers, about 45 KiB by SETTINGS_MAX_HEADER_LIST_SIZE's count."""
    extra = [(f"x-hostile-{i}", "v" * 8) for i in range(1000)]
    result = one_call(addr, request_headers(addr, extra=extra), GOOD_BODY)
    result["header_count"] = len(extra)
    return result


def case_rst_stream_mid_stream(addr):
    """Chat: send one message, read its answer, RST_STREAM(CANCEL); then use the connection."""
    conn = Conn(addr)
    try:
        sid = conn.open(request_headers(addr, path=CHAT))
        conn.send(sid, grpc_frame(chat_message(b"hostile", b"one")))
        st = conn.streams[sid]
        conn.pump(lambda: split_messages(st.data) or st.done)
        replies = [string_fields(m).get(2) for m in split_messages(st.data)]
        reset_sent = False
        frames_before, blocks_before = len(conn.frames), len(st.blocks)
        if not st.done:
            conn.h2.reset_stream(sid, error_code=CANCEL)
            conn.flush()
            reset_sent = True
        pinged = conn.ping()  # the server has seen the RST_STREAM
        # What the server sends on the stream after our reset comes when the cancellation has
        # gone through the call, not with the PING ACK: wait for its RST_STREAM (bounded).
        conn.pump(lambda: st.reset is not None)
        # Flow-control credit the server may have written before it read our reset is left out.
        after = [f for f in conn.frames[frames_before:]
                 if f.split()[1] == f"s{sid}" and not f.startswith("WINDOW_UPDATE")]
        status_after = header([h for block in st.blocks[blocks_before:] for h in block], "grpc-status")
        follow = followup(conn)
        result = stream_result(conn, sid, CHAT)  # includes what came after our RST_STREAM
        result.update(conn_result(conn))
        result.update({"chat_replies_before_reset": replies, "reset_sent": reset_sent, "ping_acked": pinged})
        result["frames_after_reset"] = after  # this stream's frames received after our RST_STREAM
        result["grpc_status_after_reset"] = int(status_after) if status_after is not None else None
        result["followup"] = follow
        return result
    finally:
        conn.close()


def case_close_mid_stream(addr):
    """Chat: send half of a message, make sure the server read it, close the socket."""
    conn = Conn(addr)
    try:
        sid = conn.open(request_headers(addr, path=CHAT))
        whole = grpc_frame(chat_message(b"hostile", b"half of this message is never sent"))
        conn.send(sid, whole[: len(whole) // 2])
        pinged = conn.ping()
        result = stream_result(conn, sid, CHAT)
        result.update(conn_result(conn))
        result.update({"bytes_sent": len(whole) // 2, "bytes_announced": len(whole) - 5, "ping_acked": pinged})
        result["followup"] = None
        return result
    finally:
        conn.close()


def case_garbage_preface(addr):
    """Garbage instead of the client connection preface; parses whatever comes back by hand."""
    host, port = addr.rsplit(":", 1)
    sock = socket.create_connection((host, int(port)), timeout=SOCKET_TIMEOUT)
    garbage = b"HELLO? this is not the HTTP/2 connection preface\r\n\r\n" + bytes(range(256))
    received, closed = b"", False
    deadline = time.monotonic() + CASE_DEADLINE
    try:
        sock.sendall(garbage)
        while time.monotonic() < deadline:
            sock.settimeout(max(0.01, min(SOCKET_TIMEOUT, deadline - time.monotonic())))
            try:
                data = sock.recv(65536)
            except socket.timeout:
                break
            except OSError:
                closed = True
                break
            if not data:
                closed = True
                break
            received += data
    finally:
        sock.close()
    frames, goaway, goaway_debug, i = [], None, None, 0
    while i + 9 <= len(received):
        length = int.from_bytes(received[i : i + 3], "big")
        ftype = received[i + 3]
        payload = received[i + 9 : i + 9 + length]
        frames.append(FRAME_TYPES.get(ftype, f"type{ftype}"))
        if ftype == 7 and len(payload) >= 8:
            goaway = int.from_bytes(payload[4:8], "big")
            goaway_debug = payload[8:].decode("latin-1") or None
        i += 9 + length
    return {
        "http_status": None,
        "grpc_status": None,
        "grpc_message": None,
        "stream_reset": None,
        "goaway": goaway,
        "goaway_debug": goaway_debug,
        "connection_closed": closed,
        "send_stalled": False,  # one write of a few bytes
        "frames": frames,
        "bytes_received": len(received),
        "followup": None,
    }


def case_thousand_streams_abandoned(addr, total=1000, path=RECORD_METRICS):
    """1000 RecordMetrics calls opened (HEADERS, no END_STREAM) and abandoned.

    Respects SETTINGS_MAX_CONCURRENT_STREAMS: each connection opens at most that many, so
    1000 streams take ceil(1000 / limit) connections, all open at the same time. A PING round
    trip on each shows the server has read every HEADERS; then every socket is closed.
    """
    conns, opened, limit = [], 0, None
    try:
        while opened < total:
            conn = Conn(addr)
            conns.append(conn)
            advertised = (conn.server_settings or {}).get(MAX_CONCURRENT_STREAMS)
            limit = advertised if advertised is not None else total
            n = min(limit, total - opened)
            for _ in range(n):
                sid = conn.h2.get_next_available_stream_id()
                conn.streams[sid] = Stream()
                conn.h2.send_headers(sid, request_headers(addr, path=path), end_stream=False)
            conn.flush()
            opened += n
            if limit == 0:
                break
        pinged = all(conn.ping() for conn in conns)
        resets = [st.reset for conn in conns for st in conn.streams.values() if st.reset is not None]
        ended = sum(st.ended for conn in conns for st in conn.streams.values())
        refused = resets.count(REFUSED_STREAM)
        result = {
            "http_status": None,
            "grpc_status": None,
            "grpc_message": None,
            "stream_reset": None,
            "max_concurrent_streams": advertised,
            "connections": len(conns),
            "streams_opened": opened,
            "accepted": opened - len(resets) - ended,
            "refused": refused,
            "other_resets": len(resets) - refused,
            "ended_by_server": ended,
            "ping_acked": pinged,
            "goaway": next((c.goaway for c in conns if c.goaway is not None), None),
            "goaway_debug": next((c.goaway_debug for c in conns if c.goaway is not None), None),
            "connection_closed": any(c.closed for c in conns),
            "send_stalled": any(c.send_stalled for c in conns),
            "followup": None,
        }
        return result
    finally:
        for conn in conns:
            conn.close()


def case_too_many_pings(addr, max_pings=20):
    """A Chat stream open (HEADERS only, so the server writes nothing that would reset its
    ping clock), then PINGs back to back, each sent when the previous one is ACKed: far more
    often than the server's minimum interval. Stops at the server's GOAWAY, then waits for
    it to close the connection."""
    conn = Conn(addr)
    try:
        sid = conn.open(request_headers(addr, path=CHAT))
        sent = 0
        while sent < max_pings and conn.alive:
            want = conn.pings_acked + 1
            conn.h2.ping(sent.to_bytes(8, "big"))
            conn.flush()
            sent += 1
            conn.pump(lambda: conn.pings_acked >= want or conn.goaway is not None)
        goaway_after = sent if conn.goaway is not None else None
        conn.pump(lambda: conn.closed)  # True only if the server closes within CASE_DEADLINE
        result = stream_result(conn, sid, CHAT)
        result.update(conn_result(conn))
        result.update({"pings_sent": sent, "pings_acked": conn.pings_acked, "goaway_after_ping": goaway_after})
        result["pings_since_server_write"] = pings_since_server_write(conn.frames, sent)
        result["followup"] = None
        return result
    finally:
        conn.close()


def pings_since_server_write(frames, pings_sent):
    """How many of our pings the server received after it last wrote a frame that resets its
    ping-abuse clock (C-core 1.56 resets it, strikes included, whenever it writes HEADERS, DATA
    or WINDOW_UPDATE), up to its GOAWAY; None without a GOAWAY.

    Our pings go one at a time, each after the previous ACK. C-core writes the ACKs of the
    pings it has read before anything else it writes in the same batch, so a PING ACK that
    arrives before such a frame belongs to a ping read before the reset, and every other ping
    was read after it."""
    names = [f.split()[0] for f in frames]
    if "GOAWAY" not in names:
        return None
    before_goaway = frames[: names.index("GOAWAY")]
    last_write = max((i for i, f in enumerate(before_goaway) if f.split()[0] in ("HEADERS", "DATA", "WINDOW_UPDATE")),
                     default=-1)
    acked_before = sum(1 for f in before_goaway[: last_write + 1] if f == "PING s0 ACK")
    return pings_sent - acked_before


CASES = {name[len("case_") :]: fn for name, fn in globals().items() if name.startswith("case_")}


def answer(result):
    """What a client is told by a case's result: the fields a test compares exactly."""
    keys = ("http_status", "grpc_status", "grpc_message", "stream_reset")
    followup = result.get("followup") or {}
    return dict({k: result.get(k) for k in keys}, followup_grpc_status=followup.get("grpc_status"))


def loop(addr, names, seconds):
    """Runs `names` in turn, round after round, until `seconds` have passed (one round at
    least); returns each case's distinct answers with how often each came."""
    tally = {name: {} for name in names}
    rounds, end = 0, time.monotonic() + seconds
    while rounds == 0 or time.monotonic() < end:
        for name in names:
            key = json.dumps(answer(CASES[name](addr)), sort_keys=True)
            tally[name][key] = tally[name].get(key, 0) + 1
        rounds += 1
    return {
        "rounds": rounds,
        "cases": {name: [{"answer": json.loads(k), "count": n} for k, n in seen.items()] for name, seen in tally.items()},
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--addr", help="host:port of the server (loopback)")
    parser.add_argument("--case", choices=sorted(CASES), help="the case to run")
    parser.add_argument("--loop", type=float, metavar="SECONDS",
                        help="run the --cases in turn for SECONDS; print each case's distinct answers")
    parser.add_argument("--cases", help="comma-separated case names, for --loop")
    parser.add_argument("--list", action="store_true", help="print the case names, one a line")
    parser.add_argument("--body-mib", type=int, default=BODY_MIB, help="length_prefix_4gib_streaming's body")
    args = parser.parse_args()
    globals()["BODY_MIB"] = args.body_mib
    if args.list:
        print("\n".join(CASES))
        return 0
    names = args.cases.split(",") if args.cases else []
    unknown = [n for n in names if n not in CASES]
    if unknown:
        parser.error(f"unknown cases {unknown}; --list names them")
    if not args.addr or not (args.case or (args.loop and names)):
        parser.error("--addr and --case (or --loop SECONDS --cases A,B) are required")
    host = args.addr.rsplit(":", 1)[0].strip("[]")
    if host not in ("127.0.0.1", "localhost", "::1"):
        parser.error("hostile input is for loopback servers only")

    def on_alarm(*_):
        raise TimeoutError("did not finish within its time")

    signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(60 + int(args.loop or 0))
    start = time.monotonic()
    if args.loop:
        result = loop(args.addr, names, args.loop)
    else:
        result = {"case": args.case}
        result.update(CASES[args.case](args.addr))
    result["elapsed_ms"] = round((time.monotonic() - start) * 1000)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
