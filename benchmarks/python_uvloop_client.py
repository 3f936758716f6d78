#!/usr/bin/env python3
"""A plain Python streaming client on uvloop: what a typical Python benchmark client does per event.

One keep-alive HTTP/1.1 connection per stream. For every response it parses the status line and
headers, de-chunks the chunked body, splits SSE events on blank lines, and ``json.loads`` every
``data:`` payload to see whether the event carries output text, taking a timestamp per output
event as a benchmark client must. When the last chunk arrives it sends the next request on the
same connection at once. Two implementations of the transport side:

* ``--api protocol`` (default): an ``asyncio.Protocol`` parsing in ``data_received`` (the lean way);
* ``--api streams``: ``asyncio.open_connection`` with ``readuntil``/``readline``/``readexactly``
  per chunk, one coroutine per stream (the common way).

Usage: python_uvloop_client.py HOST PORT CONNECTIONS DURATION_S [--warmup S] [--max-tokens N] [--api A]
Counters cover DURATION_S after the warm-up; the runner reads the CPU from outside
(``agentperf_native.microbench.cpu``), as for every client.
Prints one JSON object on stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time

try:
    import uvloop
except ImportError:  # pragma: no cover - the benchmark wants uvloop; say so rather than silently differ
    uvloop = None


class Stats:
    __slots__ = ("events", "output_events", "responses", "errors", "reconnects", "reads")

    def __init__(self) -> None:
        self.reads = 0  # data_received calls (--api protocol): one per read() of the event loop
        self.events = 0
        self.output_events = 0
        self.responses = 0
        self.errors = 0
        self.reconnects = 0

    def copy(self) -> dict:
        return {k: getattr(self, k) for k in self.__slots__}


class SseStream:
    """The SSE side of one response: splits events, decodes each data payload, stamps output events."""

    __slots__ = ("stats", "pending", "first_token_ns", "last_token_ns", "tokens")

    def __init__(self, stats: Stats) -> None:
        self.stats = stats
        self.pending = b""  # de-chunked body bytes not yet split into events
        self.first_token_ns = 0
        self.last_token_ns = 0
        self.tokens = 0

    def feed(self, data: bytes) -> None:
        buf = self.pending + data if self.pending else data
        events = buf.split(b"\n\n")
        self.pending = events.pop()  # the incomplete tail
        stats = self.stats
        for event in events:
            stats.events += 1
            for line in event.split(b"\n"):
                if not line.startswith(b"data:"):
                    continue
                payload = line[5:].strip()
                if payload == b"[DONE]":
                    continue
                try:
                    obj = json.loads(payload)
                except ValueError:
                    stats.errors += 1
                    continue
                if "error" in obj:
                    stats.errors += 1
                choices = obj.get("choices")
                if choices:
                    delta = choices[0].get("delta") or {}
                    if delta.get("content"):
                        now = time.perf_counter_ns()
                        if not self.first_token_ns:
                            self.first_token_ns = now
                        self.last_token_ns = now
                        self.tokens += 1
                        stats.output_events += 1

    def done(self) -> None:
        self.stats.responses += 1
        if self.pending.strip():
            self.stats.errors += 1  # an unterminated event at the end of the stream
        if self.tokens == 0:
            self.stats.errors += 1


def check_head(head: bytes, stats: Stats) -> None:
    status_line, _, rest = head.partition(b"\r\n")
    parts = status_line.split(b" ", 2)
    if len(parts) < 2 or parts[1] != b"200" or b"chunked" not in rest.lower():
        stats.errors += 1


class StreamProtocol(asyncio.Protocol):
    """--api protocol: one connection, one request in flight at a time, parsed in data_received."""

    def __init__(self, request: bytes, stats: Stats, on_lost) -> None:
        self.request = request
        self.stats = stats
        self.on_lost = on_lost
        self.transport = None
        self.closing = False
        self._reset()

    def _reset(self) -> None:
        self.buf = b""          # bytes not yet parsed (headers or chunk framing)
        self.in_headers = True
        self.chunk_left = 0     # bytes of the current chunk's data still to read
        self.sse = SseStream(self.stats)

    def connection_made(self, transport) -> None:
        self.transport = transport
        transport.write(self.request)

    def connection_lost(self, exc) -> None:
        if not self.closing:
            self.stats.errors += 1
            self.on_lost(self)

    def data_received(self, data: bytes) -> None:
        self.stats.reads += 1
        buf = self.buf + data if self.buf else data
        if self.in_headers:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                self.buf = buf
                return
            check_head(buf[:end], self.stats)
            self.in_headers = False
            buf = buf[end + 4:]
        pos = 0
        n = len(buf)
        body = []
        while pos < n:
            if self.chunk_left > 0:
                take = min(self.chunk_left, n - pos)
                body.append(buf[pos:pos + take])
                self.chunk_left -= take
                pos += take
                continue
            line_end = buf.find(b"\r\n", pos)
            if line_end < 0:
                break
            if line_end == pos:  # the CRLF that ends a chunk's data
                pos += 2
                continue
            size = int(buf[pos:line_end].split(b";", 1)[0], 16)
            if size == 0:
                if n - line_end < 4:  # wait for the final CRLF
                    break
                if body:
                    self.sse.feed(b"".join(body))
                self.sse.done()
                self._reset()
                if not self.closing:
                    self.transport.write(self.request)
                return
            self.chunk_left = size
            pos = line_end + 2
        self.buf = buf[pos:]
        if body:
            self.sse.feed(b"".join(body))

    def close(self) -> None:
        self.closing = True
        if self.transport:
            self.transport.close()


async def stream_loop(host: str, port: int, request: bytes, stats: Stats, ready: asyncio.Event) -> None:
    """--api streams: one coroutine per connection, readline/readexactly per chunk."""
    first = True
    while True:
        writer = None
        try:
            reader, writer = await asyncio.open_connection(host, port)
            if first:
                first = False
                ready.set()
            while True:
                writer.write(request)
                head = await reader.readuntil(b"\r\n\r\n")
                check_head(head[:-4], stats)
                sse = SseStream(stats)
                while True:
                    size_line = await reader.readline()
                    size = int(size_line.split(b";", 1)[0], 16)
                    if size == 0:
                        await reader.readexactly(2)
                        break
                    chunk = await reader.readexactly(size + 2)
                    sse.feed(chunk[:-2])
                sse.done()
        except asyncio.CancelledError:
            if writer:
                writer.close()
            raise
        except (OSError, ValueError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            stats.errors += 1
            stats.reconnects += 1
            if writer:
                writer.close()
            if first:
                first = False
                ready.set()
            await asyncio.sleep(0.1)


def build_request(host: str, port: int, max_tokens: int) -> bytes:
    body = json.dumps({
        "model": "agentperf-sim", "stream": True, "stream_options": {"include_usage": True},
        "max_tokens": max_tokens,
        "messages": [{"role": "user", "content": "Write a short story about a benchmark."}],
    }, separators=(",", ":")).encode()
    head = (f"POST /v1/chat/completions HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
            f"Accept: text/event-stream\r\nContent-Length: {len(body)}\r\n\r\n").encode()
    return head + body


async def main_async(args) -> dict:
    loop = asyncio.get_running_loop()
    stats = Stats()
    request = build_request(args.host, args.port, args.max_tokens)
    conns: list[StreamProtocol] = []
    tasks: list[asyncio.Task] = []

    async def connect() -> StreamProtocol:
        _, proto = await loop.create_connection(lambda: StreamProtocol(request, stats, lost), args.host, args.port)
        return proto

    def lost(proto: StreamProtocol) -> None:
        stats.reconnects += 1
        conns.remove(proto)
        task = loop.create_task(connect())
        task.add_done_callback(lambda t: conns.append(t.result()) if not t.exception() else None)

    # Open connections in batches so the listen backlog is never the bottleneck.
    for i in range(0, args.connections, 100):
        n = min(args.connections, i + 100) - i
        if args.api == "protocol":
            conns.extend(await asyncio.gather(*(connect() for _ in range(n))))
        else:
            ready = [asyncio.Event() for _ in range(n)]
            tasks.extend(loop.create_task(stream_loop(args.host, args.port, request, stats, r)) for r in ready)
            await asyncio.gather(*(r.wait() for r in ready))

    await asyncio.sleep(args.warmup)
    before, w0 = stats.copy(), time.monotonic()
    await asyncio.sleep(args.duration)
    after, w1 = stats.copy(), time.monotonic()
    for c in list(conns):
        c.close()
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    result = {"client": "python_uvloop", "api": args.api, "connections": args.connections, "warmup_s": args.warmup,
              "wall_s": w1 - w0,
              "loop": type(loop).__module__ + "." + type(loop).__name__}
    result.update({k: after[k] - before[k] for k in after})
    return result


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("host")
    p.add_argument("port", type=int)
    p.add_argument("connections", type=int)
    p.add_argument("duration", type=float)
    p.add_argument("--warmup", type=float, default=0.0)
    p.add_argument("--max-tokens", type=int, default=64)
    p.add_argument("--api", choices=("protocol", "streams"), default="protocol")
    p.add_argument("--allow-asyncio", action="store_true", help="run on the default asyncio loop if uvloop is missing")
    args = p.parse_args()
    if uvloop is None and not args.allow_asyncio:
        sys.exit("python_uvloop_client: uvloop is not installed (pip install uvloop, or pass --allow-asyncio)")
    if uvloop is not None:
        result = uvloop.run(main_async(args))
    else:
        result = asyncio.run(main_async(args))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
