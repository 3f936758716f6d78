"""Credentials and prompts stay out of everything the tool writes; TLS is verified by default; the
simulator listens on loopback unless told otherwise."""

import json
import os
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

import agentperf_native as ap
from agentperf_native.cli import exit_codes
from agentperf_native.endpoint import redact
from peers.servers import Hypercorn

CLI = [sys.executable, "-m", "agentperf_native.cli"]
KEY = "sk-agentperf-test-5f2c9a81d3e74b06"
PASSWORD = "hunter2-url-password"
MARKER = "PROMPT-MARKER-7d1e0c"


class SeeingRelay:
    """A TCP relay to ``upstream_port`` that keeps the first bytes of every connection (to see what
    the client sends: the Authorization header)."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.seen: list[bytes] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            up = socket.create_connection(("127.0.0.1", self.upstream_port))
            for a, b, keep in ((conn, up, True), (up, conn, False)):
                threading.Thread(target=self._pipe, args=(a, b, keep), daemon=True).start()

    def _pipe(self, src, dst, keep: bool) -> None:
        try:
            first = True
            while data := src.recv(65536):
                if keep and first:
                    self.seen.append(data[:4096])
                    first = False
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
        self.listener.close()


def _trajectories(tmp_path) -> str:
    conv = tmp_path / "secret-prompts.jsonl"
    turns = [{"messages": [{"role": "user", "content": f"{MARKER} step {i}: the customer's data"}], "output_tokens": 6}
             for i in range(4)]
    conv.write_text(json.dumps({"id": "s", "system": f"{MARKER} system prompt", "turns": turns}) + "\n")
    return str(conv)


def _everything_written(out: Path, *streams: str) -> bytes:
    files = [p for p in out.rglob("*") if p.is_file()]
    assert {"manifest.json", "summary.json", "phases.json", "requests.bin"} <= {p.name for p in files}
    return b"\n".join([p.read_bytes() for p in files] + [s.encode() for s in streams])


@pytest.mark.parametrize("how", ["env", "file"])
def test_a_run_with_an_api_key_writes_it_nowhere_nor_the_url_password_nor_the_prompts(tmp_path, how):
    sim = ap.SimServer(ttft_s=0.005, itl_s=0.001).start()
    relay = SeeingRelay(sim.port)
    out = tmp_path / "res"
    env = {**os.environ}
    if how == "env":
        env["AGENTPERF_TEST_KEY"] = KEY
        key_args = ["--api-key-env", "AGENTPERF_TEST_KEY"]
    else:
        (tmp_path / "key").write_text(KEY + "\n")
        key_args = ["--api-key-file", str(tmp_path / "key")]
    url = f"http://agent:{PASSWORD}@127.0.0.1:{relay.port}/v1"
    try:
        proc = subprocess.run(CLI + ["run", "--url", url, *key_args, "--concurrency", "2", "--duration", "1s",
                                     "--tool-delay", "none", "--trajectories", _trajectories(tmp_path),
                                     "--out", str(out)], capture_output=True, text=True, timeout=120, env=env)
    finally:
        relay.stop()
        sim.stop()
    assert proc.returncode in (exit_codes.OK, exit_codes.INVALID), proc.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["phase"]["requests_ok"] > 0
    # the key was sent (as the bearer token, on every connection) ...
    assert relay.seen and all(f"authorization: bearer {KEY}".lower().encode() in s.lower() for s in relay.seen)
    assert not any(PASSWORD.encode() in s for s in relay.seen)  # URL credentials are not sent
    # ... and written nowhere: no results file, no message
    written = _everything_written(out, proc.stdout, proc.stderr)
    assert KEY.encode() not in written
    assert PASSWORD.encode() not in written
    assert MARKER.encode() not in written, "prompt text in the results"
    manifest = json.loads((out / "manifest.json").read_text())
    assert f"http://***@127.0.0.1:{relay.port}/v1" in manifest["command"]
    assert manifest["config"]["url"] == f"http://***@127.0.0.1:{relay.port}/v1"
    assert "credentials in --url are not sent" in proc.stderr


def test_a_key_the_server_echoes_in_an_error_is_redacted(tmp_path, monkeypatch):
    """A gateway that answers 401 with the key in its message: the message is shown, the key is not."""
    import http.server

    class Echo(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            body = json.dumps({"data": [{"id": "m"}]}).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_POST(self):
            body = f'{{"error": "invalid key {self.headers["Authorization"]}"}}'.encode()
            self.send_response(403)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *a):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Echo)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        proc = subprocess.run(CLI + ["run", "--url", f"http://127.0.0.1:{server.server_address[1]}/v1",
                                     "--api-key-env", "AGENTPERF_TEST_KEY", "--out", str(tmp_path / "res")],
                              capture_output=True, text=True, timeout=60,
                              env={**os.environ, "AGENTPERF_TEST_KEY": KEY})
    finally:
        server.shutdown()
        server.server_close()
    assert proc.returncode == exit_codes.COULD_NOT_RUN, proc.stderr
    assert "answered HTTP 403" in proc.stderr and "invalid key Bearer ***" in proc.stderr
    assert KEY not in proc.stderr + proc.stdout


def test_redact_replaces_url_credentials_and_secrets_only():
    assert redact("see https://u:p@gw.example:8443/v1 and http://h/v1") == "see https://***@gw.example:8443/v1 and http://h/v1"
    assert redact("prometheus:http://admin:pw@10.0.0.1:9400/metrics") == "prometheus:http://***@10.0.0.1:9400/metrics"
    assert redact("token sk-1 in text", ("sk-1",)) == "token *** in text"
    assert redact("mail me: a@b.c") == "mail me: a@b.c"


def test_tls_verification_is_on_by_default_for_run(tmp_path):
    server = Hypercorn(tls=True)
    try:
        proc = subprocess.run(CLI + ["run", "--url", server.url, "--out", str(tmp_path / "res")],
                              capture_output=True, text=True, timeout=60)
    finally:
        server.stop()
    assert proc.returncode == exit_codes.COULD_NOT_RUN, proc.stderr
    assert "certificate" in proc.stderr and "--ca FILE" in proc.stderr and "--insecure" in proc.stderr
    assert not (tmp_path / "res").exists()


def _listening_addresses(port: int) -> set[str]:
    """The local addresses a TCP socket listens on at ``port`` (from /proc/net/tcp and tcp6)."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            local, state = line.split()[1], line.split()[3]
            addr, p = local.split(":")
            if state == "0A" and int(p, 16) == port:  # LISTEN
                found.add(socket.inet_ntoa(bytes.fromhex(addr)[::-1]) if len(addr) == 8 else addr)
    return found


@pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="reads the listening sockets from /proc")
@pytest.mark.parametrize("host_args, expected", [([], {"127.0.0.1"}), (["--host", "0.0.0.0"], {"0.0.0.0"})])
def test_serve_sim_binds_to_loopback_unless_told_otherwise(host_args, expected):
    proc = subprocess.Popen(CLI + ["serve-sim", "--port", "0", *host_args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        assert "listening on http://" in line, proc.stderr.read() if proc.poll() is not None else line
        port = int(line.strip().rsplit(":", 1)[1].split("/")[0])
        assert _listening_addresses(port) == expected
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=10)
