"""HTTP/2: requests that agents submit in one loop iteration on one connection go out in one write.

A batching server ends every stream of a batch on the same step, so their agents send their next
requests together; writing each on its own costs a system call per request and lets the server see
them trickle in. The count is the kernel's: the data segments the engine's sockets sent.
"""

import os
import socket
import struct
import time

import agentperf_native as ap
from conftest import one_turn_workload

TCPI_DATA_SEGS_OUT = 156  # offset in struct tcp_info (Linux >= 4.6)


def _data_segments_to(port: int) -> int:
    """Data segments this process's sockets connected to ``port`` have sent (``tcpi_data_segs_out``
    of TCP_INFO). On loopback with Nagle off every write of a small request is one segment."""
    total = 0
    for name in os.listdir("/proc/self/fd"):
        try:
            sock = socket.socket(fileno=os.dup(int(name)))
        except OSError:
            continue
        try:
            if sock.type == socket.SOCK_STREAM and sock.family == socket.AF_INET and sock.getpeername()[1] == port:
                info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 256)
                total += struct.unpack_from("<I", info, TCPI_DATA_SEGS_OUT)[0]
        except OSError:
            pass
        finally:
            sock.close()
    return total


def test_requests_submitted_together_on_one_connection_share_a_write(sim):
    # 200 agents on 2 connections, every stream on the server's 20 ms grid: 8 tokens, then all
    # 200 send their next request in the same loop iteration.
    server = sim(ttft_s=0.0, itl_s=0.02, workers=1, lockstep=True)
    engine = ap.Engine(server.url, one_turn_workload(8), workers=1, protocol="h2", streams_per_connection=100)
    engine.start()
    try:
        engine.set_concurrency(200)
        time.sleep(0.5)  # connections up, streams in step
        before, requests_before = _data_segments_to(server.port), engine.snapshot().requests_started
        time.sleep(2.0)
        writes, requests = _data_segments_to(server.port) - before, engine.snapshot().requests_started - requests_before
    finally:
        engine.stop()
    records = engine.drain_records()
    ok = records[records["error_kind"] == 0]
    cancelled = ap.ERROR_KINDS.index("cancelled")  # the streams in flight at stop()
    assert len(ok) >= 1000 and set(records["error_kind"].tolist()) <= {0, cancelled}
    assert requests >= 1000
    # Each request written on its own would be one write per request.
    assert writes <= requests / 10, (writes, requests)
    # And every request's send stamp sits before the server's own stamp of its first event.
    stamps = {s["request_id"]: s for s in server.stamps()}
    got = [(int(r["sent_ns"]), stamps[int(r["request_id"])]["first_token_ns"]) for r in ok
           if int(r["request_id"]) in stamps]
    assert len(got) == len(ok)
    assert all(0 < sent <= first for sent, first in got)
