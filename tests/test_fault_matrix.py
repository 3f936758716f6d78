"""The fault matrix: every way a server can fail a request, end to end, over HTTP/1.1 and h2c.

Each case runs a fixed phase against a server that misbehaves in one way — the simulator's fault
knobs, or a raw socket server of this file's own (loopback, one thread per connection / stream)
that counts what it did — and asserts the error kind the engine recorded, that the count matches
the server's own count of the faults it injected, and that the phase finishes in bounded time.
"""

from __future__ import annotations

import collections
import socket
import threading
import time

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import numpy as np
import pytest

import agentperf_native as ap
from agentperf_native import _core
from agentperf_native.engine import FLAG_NEW_CONNECTION
from agentperf_native.failures import FirstFailures, describe
from agentperf_native.sim.presets import BatchingParams
from conftest import one_turn_workload

KIND = {name: i for i, name in enumerate(ap.ERROR_KINDS)}
PROTOCOLS = ["h1", "h2"]
FAST = BatchingParams(max_batch=16, prefill_tokens_per_s=1e6, step_base_s=0.002, step_per_seq_s=0.0001)


def event(text: str) -> bytes:
    return b'data: {"choices":[{"delta":{"content":"' + text.encode() + b'"}}]}\n\n'


USAGE = b'data: {"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":%d}}\n\ndata: [DONE]\n\n'


class Gone(Exception):
    """The server stopped (or the peer went) while a script was answering."""


class Exchange:
    """One request as a script sees it: primitives that do not depend on the protocol."""

    def __init__(self, server: "RawServer", index: int, first_on_connection: bool) -> None:
        self.server = server
        self.index = index
        self.first_on_connection = first_on_connection
        self.started = False
        self.sent_bytes = 0

    # Headers and the end of a response are sent under the server's lock, so that stop() knows
    # exactly which responses it cut (started, not ended).
    def head(self, status: int = 200, headers: tuple = (), content_type: str = "text/event-stream") -> None:
        with self.server.lock:
            if self.server.stopping:
                raise Gone
            self._head(status, list(headers), content_type)
            self.started = True
            self.server.active.add(self)

    def end(self) -> None:
        with self.server.lock:
            if self.server.stopping:
                raise Gone
            self._end()
            self.server.active.discard(self)

    def data(self, payload: bytes) -> None:
        if self.server.stopping:
            raise Gone
        self._data(payload)
        self.sent_bytes += len(payload)

    def wait(self, seconds: float) -> None:
        """Pauses; returns early (raising Gone) when the server stops."""
        if self.server.stopped.wait(seconds):
            raise Gone

    def respond(self, tokens: int = 3, gap_s: float = 0.0) -> None:
        self.head()
        for k in range(tokens):
            if gap_s:
                self.wait(gap_s)
            self.data(event(f"t{k}"))
        self.data(USAGE % tokens)
        self.end()


class H1Exchange(Exchange):
    def __init__(self, server, index, first, sock: socket.socket) -> None:
        super().__init__(server, index, first)
        self.sock = sock

    def _send(self, raw: bytes) -> None:
        try:
            self.sock.sendall(raw)
        except OSError:
            raise Gone from None

    def _head(self, status, headers, content_type):
        extra = "".join(f"{k}: {v}\r\n" for k, v in headers)
        self._send(f"HTTP/1.1 {status} X\r\nContent-Type: {content_type}\r\nTransfer-Encoding: chunked\r\n"
                   f"{extra}\r\n".encode())

    def _data(self, payload):
        self._send(b"%x\r\n" % len(payload) + payload + b"\r\n")

    def _end(self):
        self._send(b"0\r\n\r\n")

    def reset(self) -> None:
        """Closes the connection with a TCP reset."""
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        self.sock.close()
        raise Gone

    def close(self) -> None:
        """Closes the connection cleanly (FIN)."""
        self.sock.shutdown(socket.SHUT_WR)
        raise Gone


class H2Exchange(Exchange):
    def __init__(self, server, index, first, link: "H2Link", stream_id: int) -> None:
        super().__init__(server, index, first)
        self.link = link
        self.stream_id = stream_id

    def _send(self, fn) -> None:
        with self.link.lock:
            try:
                fn(self.link.conn)
                self.link.sock.sendall(self.link.conn.data_to_send())
            except (h2.exceptions.StreamClosedError, h2.exceptions.ProtocolError, OSError):
                raise Gone from None

    def _head(self, status, headers, content_type):
        self._send(lambda c: c.send_headers(self.stream_id, [(":status", str(status)), ("content-type", content_type)]
                                            + headers))

    def _data(self, payload):
        step = 16384
        for i in range(0, len(payload), step):
            piece = payload[i:i + step]
            with self.link.window_opened:  # flow control: wait for the client's WINDOW_UPDATEs
                while self.link.window(self.stream_id) < len(piece):
                    if self.server.stopping or not self.link.window_opened.wait(5.0):
                        raise Gone
            self._send(lambda c, p=piece: c.send_data(self.stream_id, p))

    def _end(self):
        self._send(lambda c: c.end_stream(self.stream_id))

    def reset(self) -> None:
        self._send(lambda c: c.reset_stream(self.stream_id))
        with self.server.lock:
            self.server.active.discard(self)
        raise Gone

    def close(self) -> None:
        """Ends the connection: GOAWAY, then FIN."""
        self._send(lambda c: c.close_connection(last_stream_id=self.stream_id))
        self.link.sock.shutdown(socket.SHUT_WR)
        raise Gone


class H2Link:
    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.lock = threading.Lock()
        self.window_opened = threading.Condition(self.lock)  # notified after every read
        self.conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False, header_encoding="utf-8"))

    def window(self, stream_id: int) -> int:  # under the lock
        try:
            return self.conn.local_flow_control_window(stream_id)
        except h2.exceptions.StreamClosedError:
            raise Gone from None


class RawServer:
    """A loopback server whose every request is answered by ``script(exchange)``. ``protocol``: "h1",
    "h2" (h2c, prior knowledge) or "sink" (accepts, never reads). ``stop()`` closes the listener and
    ends every connection cleanly, counting the responses it cut (``counts["cut"]``)."""

    def __init__(self, script, protocol: str = "h1", port: int = 0) -> None:
        self.script = script
        self.protocol = protocol
        self.lock = threading.Lock()
        self.counts: collections.Counter = collections.Counter()
        self.active: set[Exchange] = set()
        self.stopping = False
        self.stopped = threading.Event()
        self.socks: list[socket.socket] = []
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", port))
        self.listener.listen(256)
        self.port = self.listener.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}/v1"
        threading.Thread(target=self._accept, daemon=True).start()

    def count(self, what: str, n: int = 1) -> None:
        with self.lock:
            self.counts[what] += n

    def stop(self) -> None:
        with self.lock:
            self.stopping = True
            self.counts["cut"] += sum(1 for e in self.active if e.started)
            self.active.clear()
            # Connections still in the listen backlog are taken too (closing the listener would reset
            # them): like every other one, they end with a FIN, and a request read on them is counted
            # as unanswered.
            self.listener.setblocking(False)
            while True:
                try:
                    self._adopt(self.listener.accept()[0])
                except OSError:
                    break
            # shutdown() stops the listening at once and wakes the accept thread (a close() alone
            # would leave the socket listening while that thread sits in accept()). Only then do
            # the clients learn of the stop, so none connects in between.
            self.listener.shutdown(socket.SHUT_RDWR)
            self.listener.close()
            for s in self.socks:
                self._finish(s)
        self.stopped.set()

    @staticmethod
    def _finish(sock: socket.socket) -> None:
        try:
            sock.shutdown(socket.SHUT_WR)  # FIN after what was sent; the reader closes on EOF
        except OSError:
            pass

    def _adopt(self, sock: socket.socket) -> None:  # under the lock
        sock.setblocking(True)
        self.socks.append(sock)
        self.counts["connections"] += 1
        if self.stopping:
            self._finish(sock)
        serve = {"h1": self._serve_h1, "h2": self._serve_h2, "sink": self._serve_sink}[self.protocol]
        threading.Thread(target=self._run, args=(serve, sock), daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                sock, _ = self.listener.accept()
            except OSError:
                return
            with self.lock:
                self._adopt(sock)

    def _run(self, serve, sock: socket.socket) -> None:
        try:
            serve(sock)
        except (OSError, Gone, h2.exceptions.ProtocolError):
            pass
        finally:
            try:  # read to the client's EOF before closing: a close with unread bytes would be a reset
                sock.settimeout(2.0)
                while sock.recv(65536):
                    pass
            except OSError:
                pass
            sock.close()

    def _request(self) -> int:
        with self.lock:
            self.counts["requests"] += 1
            return self.counts["requests"]

    def _answer(self, ex: Exchange) -> None:
        try:
            self.script(ex)
        except Gone:
            pass
        finally:
            with self.lock:
                if not ex.started and self.stopping:
                    self.counts["unanswered_fresh" if ex.first_on_connection else "unanswered_reused"] += 1

    def _serve_sink(self, sock: socket.socket) -> None:
        self.stopped.wait(60)

    def _serve_h1(self, sock: socket.socket) -> None:
        buf = b""
        first = True
        while True:
            while b"\r\n\r\n" not in buf:
                chunk = sock.recv(65536)
                if not chunk:
                    return
                buf += chunk
            head, _, buf = buf.partition(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            while len(buf) < length:
                chunk = sock.recv(65536)
                if not chunk:
                    return
                buf += chunk
            buf = buf[length:]
            ex = H1Exchange(self, self._request(), first, sock)
            first = False
            self._answer(ex)
            if sock.fileno() < 0:
                return

    def _serve_h2(self, sock: socket.socket) -> None:
        link = H2Link(sock)
        with link.lock:
            link.conn.initiate_connection()
            sock.sendall(link.conn.data_to_send())
        first = True
        while True:
            data = sock.recv(65536)
            if not data:
                return
            with link.lock:  # never with the server's lock inside (head() takes them the other way)
                events = link.conn.receive_data(data)
                for ev in events:
                    if isinstance(ev, h2.events.DataReceived):
                        link.conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
                sock.sendall(link.conn.data_to_send())
                link.window_opened.notify_all()
            for ev in events:
                if isinstance(ev, h2.events.StreamReset):
                    self.count("client_resets")
                elif isinstance(ev, h2.events.StreamEnded):
                    ex = H2Exchange(self, self._request(), first, link, ev.stream_id)
                    first = False
                    threading.Thread(target=self._answer, args=(ex,), daemon=True).start()


@pytest.fixture
def raw():
    servers: list[RawServer] = []

    def start(script, protocol="h1", port=0):
        s = RawServer(script, protocol, port)
        servers.append(s)
        return s

    yield start
    for s in servers:
        if not s.stopping:
            s.stop()


def phase(url: str, protocol: str, concurrency: int, duration_s: float, *, workload=None, **engine):
    """A fixed phase; returns its probe, records, snapshot and wall time."""
    eng = ap.Engine(url, workload or one_turn_workload(3, turns=4), workers=1, protocol=protocol, **engine)
    t0 = time.monotonic()
    probe, records = ap.run_phase(eng, concurrency, duration_s, drain_timeout_s=30)
    wall = time.monotonic() - t0
    return probe, records, eng.snapshot(), wall, eng


def kinds(records) -> collections.Counter:
    return collections.Counter(ap.ERROR_KINDS[k] for k in records["error_kind"])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def check_backoff(records, base_s: float, cap_s: float) -> int:
    """Every agent's wait after its n-th consecutive connect failure is at least half the ceiling
    min(cap, base·2^(n-1)); returns the longest run of consecutive connect failures."""
    longest = 0
    for agent in np.unique(records["agent_id"]):
        mine = np.sort(records[records["agent_id"] == agent], order="scheduled_ns")
        run = 0
        for rec, nxt in zip(mine[:-1], mine[1:]):
            if rec["error_kind"] != KIND["connect"]:
                run = 0
                continue
            run += 1
            longest = max(longest, run)
            ceiling = min(cap_s, base_s * 2 ** (run - 1))
            wait = (nxt["scheduled_ns"] - rec["done_ns"]) / 1e9
            assert wait >= ceiling / 2 - 0.002, f"agent {agent}: waited {wait:.3f}s after {run} failures"
    return longest


def max_attempts(window_s: float, base_s: float, cap_s: float) -> int:
    """The most connect attempts one agent can make in a window when every wait is its shortest."""
    t, n = 0.0, 1
    while True:
        t += min(cap_s, base_s * 2 ** (n - 1)) / 2
        if t > window_s:
            return n
        n += 1


# ---------------------------------------------------------------------------------------------
# Connections refused

@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_connection_refused_at_start_backs_off_and_counts_every_attempt(protocol):
    port = free_port()  # nothing listens there
    probe, records, snap, wall, _ = phase(f"http://127.0.0.1:{port}/v1", protocol, 3, 2.0,
                                          connect_retry_s=0.05, connect_retry_max_s=0.4)
    assert probe.state == "done" and wall < 10
    assert set(kinds(records)) == {"connect"}
    assert snap.requests_by_kind == {"connect": len(records)}
    assert "refused" in snap.last_connection_error.lower()
    longest = check_backoff(records, 0.05, 0.4)
    per_agent = collections.Counter(records["agent_id"].tolist())
    assert len(per_agent) == 3
    # Bounded by the backoff (without it: one attempt per 50 ms, 40 in 2 s), and still trying.
    bound = max_attempts(2.0, 0.05, 0.4)
    assert all(3 <= n <= bound for n in per_agent.values()), (per_agent, bound)
    assert longest >= 3


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_server_going_away_mid_run_cuts_its_streams_then_agents_back_off_and_recover(raw, protocol):
    script = lambda ex: ex.respond(tokens=8, gap_s=0.02)  # noqa: E731
    server = raw(script, protocol)
    port = server.port
    holder: dict = {}

    def outage():
        time.sleep(0.8)
        server.stop()
        time.sleep(1.2)
        holder["back_ns"] = ap.now_ns()
        holder["server"] = RawServer(script, protocol, port)

    t = threading.Thread(target=outage)
    t.start()
    try:
        probe, records, snap, wall, _ = phase(server.url, protocol, 3, 3.5, connect_retry_s=0.05,
                                              connect_retry_max_s=0.4)
    finally:
        t.join()
        holder.get("server") and holder["server"].stop()
    assert probe.state == "done" and wall < 15
    got = kinds(records)
    assert set(got) <= {"none", "truncated", "connect"}, got
    # Every response the server cut is one truncated record that had begun (its headers arrived).
    cut = records[(records["error_kind"] == KIND["truncated"]) & (records["first_byte_ns"] > 0)]
    assert len(cut) == server.counts["cut"] > 0
    # HTTP/1.1: a request the server took on a fresh connection and never answered is truncated
    # too; on a reused connection it is sent again on a new one (no failure of its own).
    unanswered = records[(records["error_kind"] == KIND["truncated"]) & (records["first_byte_ns"] == 0)]
    if protocol == "h1":
        assert len(unanswered) == server.counts["unanswered_fresh"]
    # Reconnect attempts while the server was away: backed off, each one a connect record.
    assert got["connect"] > 0 and snap.requests_by_kind["connect"] == got["connect"]
    check_backoff(records, 0.05, 0.4)
    per_agent = collections.Counter(records[records["error_kind"] == KIND["connect"]]["agent_id"].tolist())
    assert max(per_agent.values()) <= max_attempts(1.2 + 0.4, 0.05, 0.4), per_agent
    # Back: every agent completes requests again.
    after = records[(records["scheduled_ns"] > holder["back_ns"]) & (records["error_kind"] == 0)]
    assert len(np.unique(after["agent_id"])) == 3
    assert holder["server"].counts["requests"] == len(after) + len(
        records[(records["scheduled_ns"] > holder["back_ns"]) & (records["error_kind"] != 0)
                & (records["error_kind"] != KIND["connect"])])


# ---------------------------------------------------------------------------------------------
# Streams that break, stall or stop

@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_reset_mid_stream(raw, protocol):
    def script(ex):
        ex.head()
        ex.data(event("a") + event("b"))
        ex.wait(0.02)
        ex.server.count("resets")
        ex.reset()

    server = raw(script, protocol)
    probe, records, snap, wall, _ = phase(server.url, protocol, 2, 0.8)
    assert probe.state == "done" and wall < 10
    assert kinds(records) == {"reset": server.counts["resets"]} and len(records) > 2
    assert (records["output_events"] == 2).all() and (records["first_byte_ns"] > 0).all()
    assert snap.requests_by_kind == {"reset": len(records)}


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_stall_ends_in_the_request_timeout(raw, protocol):
    def script(ex):
        ex.server.count("stalled")
        ex.wait(60)  # never answers

    server = raw(script, protocol)
    probe, records, snap, wall, _ = phase(server.url, protocol, 2, 1.0, request_timeout_s=0.4,
                                          stream_idle_timeout_s=0.05)
    assert probe.state == "done" and wall < 10
    assert kinds(records) == {"timeout": server.counts["stalled"]} and len(records) >= 4
    took = (records["done_ns"] - records["scheduled_ns"]) / 1e9
    assert (took >= 0.4).all() and (took < 1.4).all(), took
    # The idle timeout (far shorter) does not apply before the response begins.
    assert (records["first_byte_ns"] == 0).all()


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_stream_that_stops_sending_ends_in_the_idle_timeout_long_before_the_request_timeout(raw, protocol):
    def script(ex):
        ex.head()
        ex.data(event("a"))
        ex.server.count("silent")
        ex.wait(60)

    server = raw(script, protocol)
    probe, records, snap, wall, _ = phase(server.url, protocol, 2, 1.0, request_timeout_s=60,
                                          stream_idle_timeout_s=0.3)
    assert probe.state == "done" and wall < 8  # the request timeout (60 s) is never waited for
    assert kinds(records) == {"idle_timeout": server.counts["silent"]} and len(records) >= 2
    assert (records["output_events"] == 1).all()
    silence = (records["done_ns"] - records["first_token_ns"]) / 1e9
    assert (silence >= 0.3).all() and (silence < 1.3).all(), silence  # nowhere near the 60 s request timeout
    assert snap.requests_by_kind == {"idle_timeout": len(records)}


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_slow_headers_are_not_an_idle_stream(sim, protocol):
    server = sim(faults={"slow_headers": 1.0}, slow_headers_s=0.3, params=FAST)
    probe, records, snap, wall, _ = phase(server.url, protocol, 2, 0.8, stream_idle_timeout_s=0.1)
    assert probe.state == "done" and wall < 10
    assert kinds(records) == {"none": len(records)} and len(records) >= 2
    assert ((records["first_byte_ns"] - records["sent_ns"]) / 1e9 >= 0.3).all()
    assert server.metrics()["faults"]["slow_headers"] == server.metrics()["requests_total"] == len(records)


# ---------------------------------------------------------------------------------------------
# Error statuses: counted once each, never retried

@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_5xx_and_429_are_counted_once_each_and_not_retried(raw, protocol):
    statuses = [500, 429, 503, 200]

    def script(ex):
        status = statuses[(ex.index - 1) % len(statuses)]
        ex.server.count(status)
        if status == 200:
            return ex.respond()
        ex.head(status, content_type="application/json")
        ex.data(b'{"error":{"message":"status %d from the test server"}}' % status)
        ex.end()

    server = raw(script, protocol)
    probe, records, snap, wall, eng = phase(server.url, protocol, 2, 0.8, workload=one_turn_workload(3, turns=4,
                                                                                                 tool_delay_s=0.01))
    assert probe.state == "done" and wall < 10
    assert server.counts["requests"] == len(records)  # one request per record: nothing sent twice
    for status in statuses:
        mine = records[records["http_status"] == status]
        assert len(mine) == server.counts[status] > 0
        assert (mine["error_kind"] == (0 if status == 200 else KIND["http_status"])).all()
    # The engine kept each status's first answer, as the server wrote it.
    first = {f["http_status"]: f for f in eng.first_failures()}
    assert set(first) == {500, 429, 503}
    for status, f in first.items():
        assert f["kind"] == "http_status" and f["body"] == '{"error":{"message":"status %d from the test server"}}' % status
    # ... which is what the run's notes say, with each status's count.
    listener = FirstFailures()
    listener(records)
    lines = describe(listener.explain(eng))
    for status in (500, 429, 503):
        (line,) = [x for x in lines if f"failed as http_status {status};" in x]
        assert line.startswith(f"{server.counts[status]} failed") and f"status {status} from the test server" in line


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("fault, kind", [("http_500", "http_status"), ("http_429", "http_status"),
                                         ("http_503", "http_status"), ("reset", "reset"),
                                         ("truncate", "truncated"), ("malformed", "sse_malformed")])
def test_simulator_fault_knobs_each_count_once(sim, protocol, fault, kind):
    server = sim(faults={fault: 0.5}, seed=5, params=FAST)
    probe, records, snap, wall, _ = phase(server.url, protocol, 2, 0.8)
    assert probe.state == "done" and wall < 10
    m = server.metrics()
    failed = records[records["error_kind"] != 0]
    if protocol == "h2" and fault == "truncate":
        # HTTP/2: closing the connection cuts its other streams too, some before the server read
        # them (a reset when the server had unread bytes from the client).
        assert set(kinds(failed)) <= {"truncated", "reset"} and len(failed) >= m["faults"][fault] > 0
        assert m["requests_total"] <= len(records)
    else:
        assert set(kinds(failed)) == {kind}
        assert len(failed) == m["faults"][fault] > 0
        assert m["requests_total"] == len(records)  # one request per record: no retries


# ---------------------------------------------------------------------------------------------
# Malformed and oversized responses

MALFORMED = {
    "not JSON": event("a") + b"data: <html>bad gateway</html>\n\n",
    "JSON cut short": event("a") + b'data: {"choices":[{"delta":{"content":"b"}}]\n\n',
    "garbage after the JSON": b'data: {"choices":[{"delta":{"content":"b"}}]} trailing\n\n',
}


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_sse_and_malformed_json_in_an_event(raw, protocol, case):
    def script(ex):
        ex.head()
        ex.data(MALFORMED[case])
        ex.data(USAGE % 2)
        ex.server.count("malformed")
        ex.end()

    server = raw(script, protocol)
    probe, records, snap, wall, eng = phase(server.url, protocol, 2, 0.6)
    assert probe.state == "done" and wall < 10
    assert kinds(records) == {"sse_malformed": server.counts["malformed"]} and len(records) > 2
    (first,) = eng.first_failures()
    bad = MALFORMED[case].split(b"\n\n")[-2].removeprefix(b"data: ").decode()
    assert first["kind"] == "sse_malformed" and first["body"] == bad  # the offending event itself


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_oversized_response_headers(raw, protocol):
    def script(ex):
        ex.server.count("oversized")
        ex.head(headers=tuple((f"x-pad-{i}", "p" * 1000) for i in range(80)))  # 80 KB of headers
        ex.data(event("a") + USAGE % 1)
        ex.end()

    server = raw(script, protocol)
    probe, records, snap, wall, _ = phase(server.url, protocol, 2, 0.6)
    assert probe.state == "done" and wall < 10
    assert kinds(records) == {"oversized": server.counts["oversized"]} and len(records) > 2
    assert (records["output_events"] == 0).all()


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_oversized_event_ends_the_request_with_bounded_memory(raw, protocol):
    endless = b"x" * 65536

    def script(ex):
        ex.head()
        ex.data(b'data: {"choices":[{"delta":{"content":"')
        ex.server.count("oversized")
        try:
            for _ in range(1024):  # 64 MiB of one line, if the client kept taking it
                ex.data(endless)
        finally:
            with ex.server.lock:
                ex.server.counts["most"] = max(ex.server.counts["most"], ex.sent_bytes)

    server = raw(script, protocol)
    probe, records, snap, wall, _ = phase(server.url, protocol, 1, 0.5, max_event_bytes=1 << 20)
    assert probe.state == "done" and wall < 20
    assert kinds(records) == {"oversized": server.counts["oversized"]} and len(records) >= 1
    # Each stream was dropped soon after its first MiB: the server could not push more than socket
    # and window buffers hold beyond it, nowhere near the 64 MiB it had.
    assert server.counts["most"] < 24 << 20, server.counts["most"]


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_one_shot_requests_bound_the_body_too(raw, protocol):
    """The pre-flight's client keeps a whole body: past its bound (64 MiB) the answer is oversized."""
    block = b"y" * 65536

    def script(ex):
        ex.head(content_type="application/json")
        for _ in range(2048):  # 128 MiB, if the client kept taking it
            ex.data(block)
        ex.end()

    server = raw(script, protocol)
    t0 = time.monotonic()
    resp = _core.http_request("127.0.0.1", server.port, "GET", "/v1/models", protocol=protocol, timeout_s=60)
    assert resp["error_kind"] == "oversized" and "64 MiB" in resp["error"] and resp["status"] == 200
    assert len(resp["body"]) <= 64 << 20
    assert time.monotonic() - t0 < 30


# ---------------------------------------------------------------------------------------------
# Connections closed between turns, and a server that never reads

@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_keep_alive_closed_between_turns_is_a_reconnect_not_a_failure(raw, protocol):
    def script(ex):
        ex.respond()
        ex.server.count("closed")
        ex.close()  # HTTP/1.1: FIN after the response; HTTP/2: GOAWAY, then FIN

    server = raw(script, protocol)
    agents = 2 if protocol == "h1" else 1  # HTTP/2 agents would share the connection the server ends
    probe, records, snap, wall, _ = phase(server.url, protocol, agents, 1.0,
                                          workload=one_turn_workload(3, turns=4, tool_delay_s=0.05))
    assert probe.state == "done" and wall < 10
    assert kinds(records) == {"none": len(records)} and len(records) >= 6
    assert server.counts["closed"] == len(records)
    assert server.counts["connections"] == len(records)  # every request on a fresh connection
    # The first request of each agent used the connection opened at its start; the others reconnected.
    assert ((records["flags"] & FLAG_NEW_CONNECTION) > 0).sum() == len(records) - agents


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_server_that_accepts_and_never_reads_ends_in_the_request_timeout(raw, protocol):
    server = raw(None, "sink")
    big = ap.encode([ap.Conversation(system="s", turns=[ap.Turn(messages=[{"role": "user", "content": "x" * (32 << 20)}],
                                                                output_tokens=3)])], model="agentperf-sim")
    probe, records, snap, wall, _ = phase(server.url, protocol, 1, 1.0, workload=big, request_timeout_s=0.4)
    assert probe.state == "done" and wall < 10
    assert kinds(records) == {"timeout": len(records)} and len(records) >= 2
    took = (records["done_ns"] - records["scheduled_ns"]) / 1e9
    assert (took >= 0.4).all() and (took < 1.4).all(), took
    if protocol == "h1":
        assert server.counts["connections"] == len(records)  # each timeout gave its connection up
