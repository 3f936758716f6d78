"""Real HTTP/2 peers for the tests, started on loopback: hypercorn (h2c and TLS), nginx, h2load."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, proc: subprocess.Popen, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"peer exited early ({proc.returncode}): {proc.stderr.read() if proc.stderr else ''}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout_s}s")


def make_self_signed(directory: Path) -> tuple[Path, Path]:
    """A throwaway certificate for 127.0.0.1 / localhost (openssl CLI)."""
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
         "-keyout", str(key), "-out", str(cert), "-days", "2", "-subj", "/CN=localhost",
         "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"],
        check=True, capture_output=True)
    return cert, key


class Hypercorn:
    """hypercorn serving tests/peers/sse_app.py over h2c (prior knowledge) and HTTP/1.1, or TLS."""

    def __init__(self, tls: bool = False, env: dict[str, str] | None = None) -> None:
        self.tmp = Path(tempfile.mkdtemp(prefix="agentperf-hypercorn-"))
        self.port = free_port()
        args = [sys.executable, "-m", "hypercorn", "--bind", f"127.0.0.1:{self.port}", "--workers", "1"]
        self.cert = None
        if tls:
            self.cert, key = make_self_signed(self.tmp)
            args += ["--certfile", str(self.cert), "--keyfile", str(key)]
        args.append("sse_app:app")
        self.proc = subprocess.Popen(args, cwd=HERE, env={**os.environ, **(env or {})},
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        wait_for_port(self.port, self.proc)
        self.url = f"{'https' if tls else 'http'}://127.0.0.1:{self.port}/v1"

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        shutil.rmtree(self.tmp, ignore_errors=True)


class Nginx:
    """nginx as an HTTP/2 front (TLS, ALPN h2 and http/1.1) proxying to an HTTP/1.1 upstream.

    Everything nginx writes (pid, error and access logs, temp directories, config, certificate)
    lives in a fresh temp directory; nginx runs in the foreground (``daemon off``) as a child.
    ``proxy_buffering off`` lets the upstream's SSE events through as they come. The access log
    records each request's protocol as nginx saw it (``HTTP/2.0`` / ``HTTP/1.1``): :meth:`protocols`.
    """

    def __init__(self, upstream_port: int, nginx: str | None = None, *, tls: bool = True, http2: bool = True,
                 extra: str = "") -> None:
        """``tls=False, http2=True``: an h2c-only front (HTTP/2 with prior knowledge, no HTTP/1.1);
        ``tls=False, http2=False``: a plain HTTP/1.1 gateway. ``extra``: more ``location`` blocks."""
        self.binary = nginx or shutil.which("nginx") or "/usr/sbin/nginx"
        self.tmp = Path(tempfile.mkdtemp(prefix="agentperf-nginx-"))
        self.port = free_port()
        self.cert, key = make_self_signed(self.tmp)
        for d in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
            (self.tmp / d).mkdir()
        self.access_log = self.tmp / "access.log"
        t = self.tmp
        # As root, nginx would run its worker as 'nobody', which cannot use the 0700 temp dir.
        user = "user root root;\n" if os.geteuid() == 0 else ""
        (t / "nginx.conf").write_text(f"""{user}worker_processes 1;
pid {t}/nginx.pid;
error_log {t}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    log_format proto '$server_protocol $status $request_time $upstream_response_time';
    access_log {self.access_log} proto;
    client_body_temp_path {t}/client_body;
    proxy_temp_path {t}/proxy;
    fastcgi_temp_path {t}/fastcgi;
    uwsgi_temp_path {t}/uwsgi;
    scgi_temp_path {t}/scgi;
    upstream sim {{
        server 127.0.0.1:{upstream_port};
        keepalive 64;
    }}
    server {{
        listen 127.0.0.1:{self.port}{" ssl" if tls else ""}{" http2" if http2 else ""};
        {f"ssl_certificate {self.cert}; ssl_certificate_key {key};" if tls else ""}
        {extra}
        http2_max_concurrent_streams 128;
        keepalive_requests 100000;
        location / {{
            proxy_pass http://sim;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_buffering off;
            proxy_read_timeout 60s;
        }}
    }}
}}
""")
        self.proc = subprocess.Popen([self.binary, "-p", str(t), "-c", "nginx.conf", "-g", "daemon off;"],
                                     cwd=t, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        try:
            wait_for_port(self.port, self.proc)
        except Exception:
            self.stop()
            raise
        self.url = f"{'https' if tls else 'http'}://127.0.0.1:{self.port}/v1"

    def protocols(self) -> list[str]:
        """The protocol of every request logged so far (nginx writes a line when a request ends)."""
        if not self.access_log.exists():
            return []
        return [line.split()[0] for line in self.access_log.read_text().splitlines() if line.strip()]

    def error_log(self) -> str:
        p = self.tmp / "error.log"
        return p.read_text() if p.exists() else ""

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()  # SIGTERM: fast shutdown of the master and its worker
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.tmp, ignore_errors=True)


_UNITS_S = {"us": 1e-6, "ms": 1e-3, "s": 1.0}


def _seconds(text: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s)", text)
    if not m:
        raise ValueError(f"not an h2load duration: {text!r}")
    return float(m.group(1)) * _UNITS_S[m.group(2)]


def parse_h2load(output: str) -> dict:
    """The numbers of an h2load (nghttp2 1.52) report: request counts, status classes, timings (s)."""
    res: dict = {"output": output}
    m = re.search(r"^requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, "
                  r"(\d+) errored, (\d+) timeout", output, re.M)
    if not m:
        raise ValueError(f"no 'requests:' line in h2load output:\n{output}")
    for key, value in zip(("total", "started", "done", "succeeded", "failed", "errored", "timeout"), m.groups()):
        res[key] = int(value)
    m = re.search(r"^status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", output, re.M)
    if m:
        res.update(zip(("status_2xx", "status_3xx", "status_4xx", "status_5xx"), map(int, m.groups())))
    m = re.search(r"^Application protocol: (\S+)", output, re.M)
    res["protocol"] = m.group(1) if m else None
    m = re.search(r"^finished in ([\d.]+\w+), ([\d.]+) req/s", output, re.M)
    if m:
        res["finished_in_s"], res["req_per_s"] = _seconds(m.group(1)), float(m.group(2))
    for label, key in (("time for request", "request"), ("time for connect", "connect"),
                       ("time to 1st byte", "first_byte")):
        m = re.search(rf"^{label}:\s+(\S+)\s+(\S+)\s+(\S+)\s+(\S+)", output, re.M)
        if m:
            res[f"{key}_min_s"], res[f"{key}_max_s"], res[f"{key}_mean_s"], res[f"{key}_sd_s"] = map(_seconds, m.groups())
    return res


def run_h2load(url: str, body: bytes, *args: str, timeout_s: float = 60.0, h2load: str | None = None) -> dict:
    """Runs nghttp2's h2load (a client) POSTing ``body`` as JSON to ``url``; returns :func:`parse_h2load`."""
    binary = h2load or shutil.which("h2load") or "/usr/bin/h2load"
    with tempfile.TemporaryDirectory(prefix="agentperf-h2load-") as tmp:
        path = Path(tmp) / "body.json"
        path.write_bytes(body)
        cmd = [binary, *args, "-d", str(path), "-H", "content-type: application/json", url]
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s)
    if r.returncode != 0:
        raise RuntimeError(f"h2load exited with {r.returncode}: {r.stdout[-2000:]} {r.stderr[-2000:]}")
    res = parse_h2load(r.stdout)
    res["command"] = cmd
    return res


class ResetFirst:
    """A TCP front that resets the first connection once it has read a request (a transient fault
    at the very start of a run) and relays every later one to ``upstream_port``."""

    def __init__(self, upstream_port: int) -> None:
        import socket
        import threading

        self.upstream_port = upstream_port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}/v1"
        self.resets = 0
        self.connections = 0
        self._threads: list = []
        self._stop = threading.Event()
        t = threading.Thread(target=self._accept, daemon=True)
        t.start()
        self._threads.append(t)

    def _accept(self) -> None:
        import socket
        import struct
        import threading

        while not self._stop.is_set():
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self.connections += 1
            if self.resets == 0:
                conn.recv(65536)
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                conn.close()  # RST
                self.resets += 1
                continue
            up = socket.create_connection(("127.0.0.1", self.upstream_port))
            for a, b in ((conn, up), (up, conn)):
                t = threading.Thread(target=self._pipe, args=(a, b), daemon=True)
                t.start()

    @staticmethod
    def _pipe(src, dst) -> None:
        import socket

        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def stop(self) -> None:
        self._stop.set()
        self.listener.close()
