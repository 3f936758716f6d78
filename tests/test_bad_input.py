"""Bad input and hostile endpoints: each gives its exit code, one short message that names what is
wrong and what to do, no traceback, and (for run) no results directory.

Servers are the simulator and small servers of the tests' own on loopback (http.server, raw
sockets). Related cases live beside the features they test: an unreachable URL and a malformed
trajectory line in test_cli.py; an h2c-only front met with --protocol h1 and an HTML 404 model
listing in test_one_client.py."""

import http.server
import pathlib
import json
import re
import socket
import subprocess
import sys
import threading

import pytest
from click.testing import CliRunner

import agentperf_native as ap
from agentperf_native.cli import exit_codes
from agentperf_native.cli.run import run
from agentperf_native.cli.trajectories import trajectories
from agentperf_native.trajectories.synth import SynthConfig, generate

CLI = [sys.executable, "-m", "agentperf_native.cli"]
RUN_OPTIONS = {o for p in run.params for o in p.opts}


def run_cli(tmp_path, *args, code, timeout=90):
    """``run`` with ARGS; asserts the exit code, no traceback, no results directory; returns stderr."""
    out = tmp_path / "res"
    proc = subprocess.run(CLI + ["run", "--out", str(out), *args], capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == code, proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    assert not re.search(r"line \d+ column \d+ \(char \d+\)", proc.stderr), "a raw JSON parser message"
    assert not out.exists(), "a run that could not start left a results directory"
    error = [line for line in proc.stderr.splitlines() if line.startswith("Error:")]
    assert len(error) == 1, proc.stderr
    for option in re.findall(r"(?<![\w-])--[a-z][a-z0-9-]+", error[0].split("agentperf-native trajectories convert")[0]):
        assert option in RUN_OPTIONS, f"the message names {option}, which run does not have: {error[0]}"
    return error[0]


# --- trajectory files ---------------------------------------------------------------------------

GOOD = json.dumps({"id": "g", "turns": [{"messages": [{"role": "user", "content": "hi"}], "output_tokens": 5}]})


@pytest.mark.parametrize("name, text, says", [
    ("empty.jsonl", "", "the file is empty; remove it or pass a trajectory file"),
    ("blank.jsonl", "\n  \n", "the file is empty"),
    ("truncated.jsonl", GOOD[:40] + "\n", "truncated.jsonl:1: not valid JSON: it ends before the JSON does"),
    ("truncated.json", "{\n  \"turns\": [\n", "truncated.json: not valid JSON: it ends before the JSON does"),
    ("garbage.jsonl", "hello\n", "garbage.jsonl:1: not valid JSON (Expecting value at column 1); each line must hold"),
    ("unknown.json", '{"hello": 1}', "cannot tell the format from its first JSON object; if it is of another "
                                     "format, name it: agentperf-native trajectories convert"),
])
def test_run_with_a_bad_trajectory_file(tmp_path, name, text, says):
    bad = tmp_path / name
    bad.write_text(text)
    message = run_cli(tmp_path, "--trajectories", str(bad), code=exit_codes.COULD_NOT_RUN, timeout=60)
    assert says in message and str(bad) in message


def test_run_with_a_missing_trajectory_file(tmp_path):
    message = run_cli(tmp_path, "--trajectories", str(tmp_path / "nope.jsonl"), code=exit_codes.COULD_NOT_RUN)
    assert "no such file; pass --trajectories with an existing trajectory file" in message


def _folder(tmp_path):
    src = tmp_path / "runs"
    src.mkdir()
    (src / "a-good.jsonl").write_text(GOOD + "\n")
    (src / "b-empty.jsonl").write_text("")
    (src / "c-unknown.json").write_text('{"hello": 1}')
    (src / "d-truncated.jsonl").write_text(GOOD[:30])
    return src


def test_convert_names_every_bad_file_and_writes_nothing(tmp_path):
    src, out = _folder(tmp_path), tmp_path / "all.jsonl"
    r = CliRunner().invoke(trajectories, ["convert", str(src), "-o", str(out)])
    assert r.exit_code == exit_codes.COULD_NOT_RUN and r.exc_info[0] is SystemExit, r.output
    assert "3 of 4 source files cannot be converted (nothing written)" in r.output
    assert f"{src / 'b-empty.jsonl'}: the file is empty" in r.output
    assert f"{src / 'c-unknown.json'}: cannot tell the format" in r.output
    assert f"{src / 'd-truncated.jsonl'}:1: not valid JSON: it ends before the JSON does" in r.output
    assert "--skip-bad converts the others" in r.output
    assert not out.exists()


def test_convert_skip_bad_converts_the_rest_and_lists_what_it_skipped(tmp_path):
    src, out = _folder(tmp_path), tmp_path / "all.jsonl"
    r = CliRunner().invoke(trajectories, ["convert", str(src), "-o", str(out), "--skip-bad"])
    assert r.exit_code == 0, r.output
    assert "from 1 files (3 skipped)" in r.output
    assert r.output.count("skipped /") == 3 and "skipped " + str(src / "b-empty.jsonl") in r.output
    assert [c.id for c in ap.load_conversations(out)] == ["g"]


#: Flags of other programs the messages name (servers' own options), not ours.
SERVER_FLAGS = {"--enable-prompt-tokens-details", "--enable-cache-report", "--metrics", "--help"}


def test_every_option_the_package_names_is_an_option_of_its_commands():
    """Grep the messages: every --option written anywhere in the package exists."""
    import click

    from agentperf_native.cli import main

    known: set[str] = set()

    def walk(cmd) -> None:
        for p in cmd.params:
            known.update(p.opts + p.secondary_opts)
        for sub in getattr(cmd, "commands", {}).values():
            walk(sub)

    walk(main)
    assert isinstance(main, click.Group) and "--skip-bad" in known and "--stop-after-failing" in known
    package = pathlib.Path(ap.__file__).parent
    for path in package.rglob("*.py"):
        for option in re.findall(r"(?<![\w-])--[a-z][a-z0-9-]+", path.read_text()):
            assert option in known | SERVER_FLAGS, f"{path.relative_to(package)} names {option}, which no command has"


def test_library_messages_about_a_files_format_name_no_option():
    """Importers serve run (no --format) and convert/inspect (--format): their messages say what is
    wrong and each command adds how to name the format."""
    from agentperf_native.trajectories import importers

    for path in pathlib.Path(importers.__file__).parent.glob("*.py"):
        for message in re.findall(r"SourceError\(([^)]*)\)", path.read_text(), re.S):
            assert "--" not in message, f"{path.name}: a message names an option: {message}"


# --- option values ------------------------------------------------------------------------------

@pytest.mark.parametrize("args, says", [
    (["--tool-delay", "sometimes"], "Invalid value for --tool-delay: tool delay 'sometimes': write recorded"),
    (["--output-length", "fixed:0"], "Invalid value for --output-length: output policy 'fixed:0': write fixed:N"),
    (["--tier", "60"], "Invalid value for --tier: tier '60': write SPEED:TTFT"),
    (["--power", "solar"], "--power 'solar': unknown source 'solar'; accepted:"),
    (["--url", "ftp://h/v1"], "Invalid value for --url: unsupported URL scheme"),
    (["--concurrency", "0"], "Invalid value for '--concurrency': 0 is not in the range x>=1"),
    (["--duration", "5 parsecs"], "Invalid value for '--duration'"),
    (["--start-concurrency", "8", "--max-concurrency", "4"], "8 is above --max-concurrency 4"),
    (["--api-key-env", "A", "--api-key-file", "f"], "give the API key one way"),
])
def test_run_refuses_a_wrong_option_value_before_starting(tmp_path, args, says):
    message = run_cli(tmp_path, *args, code=exit_codes.USAGE, timeout=60)
    assert says in message


def test_an_unset_api_key_variable_or_an_empty_key_file_is_named(tmp_path, monkeypatch):
    monkeypatch.delenv("AGENTPERF_NO_SUCH_KEY", raising=False)
    message = run_cli(tmp_path, "--api-key-env", "AGENTPERF_NO_SUCH_KEY", code=exit_codes.COULD_NOT_RUN)
    assert "environment variable AGENTPERF_NO_SUCH_KEY (from --api-key-env) is not set or empty" in message
    empty = tmp_path / "key"
    empty.write_text("\n")
    message = run_cli(tmp_path, "--api-key-file", str(empty), code=exit_codes.COULD_NOT_RUN)
    assert f"--api-key-file {empty} is empty; write the key on its first line" in message


# --- endpoints ----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def sim():
    server = ap.SimServer(ttft_s=0.005, itl_s=0.001).start()
    yield server
    server.stop()


def test_an_unknown_model_is_named_with_the_models_served(sim, tmp_path):
    message = run_cli(tmp_path, "--url", sim.url, "--model", "gpt-9", code=exit_codes.COULD_NOT_RUN)
    assert f"model 'gpt-9' is not served at {sim.url} (it lists: {sim.model}); pass one of those to --model" in message


def test_a_wrong_base_path_says_to_check_the_url(sim, tmp_path):
    root = sim.url[: -len("/v1")]
    message = run_cli(tmp_path, "--url", root + "/api", code=exit_codes.COULD_NOT_RUN)
    assert f"GET {root}/api/models answered HTTP 404" in message
    assert f"check that --url is the API's base URL (OpenAI-compatible servers serve it under /v1, e.g. {root}/v1)" \
        in message
    # with --model the pre-flight meets the same 404 and says the same
    message = run_cli(tmp_path, "--url", root + "/api", "--model", sim.model, code=exit_codes.COULD_NOT_RUN)
    assert f"pre-flight failed: POST {root}/api/chat/completions answered HTTP 404" in message
    assert "check that --url is the API's base URL" in message


def test_a_failing_pre_flight_is_could_not_run(tmp_path):
    with ap.SimServer(faults={"http_500": 1.0}) as server:
        message = run_cli(tmp_path, "--url", server.url, "--model", server.model, code=exit_codes.COULD_NOT_RUN)
    assert "pre-flight failed: 3 attempts failed" in message and "answered HTTP 500" in message


class _Answer(http.server.BaseHTTPRequestHandler):
    """Answers every request with the server's (status, content type, body)."""

    answer = (200, "text/html", b"")

    def _send(self) -> None:
        status, ctype, body = self.server.answer  # type: ignore[attr-defined]
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = _send

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def answering():
    servers = []

    def start(status, ctype, body):
        s = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Answer)
        s.answer = (status, ctype, body)
        threading.Thread(target=s.serve_forever, daemon=True).start()
        servers.append(s)
        return f"http://127.0.0.1:{s.server_address[1]}/v1"

    yield start
    for s in servers:
        s.shutdown()
        s.server_close()


@pytest.mark.parametrize("status, ctype, body, says", [
    (200, "text/html", b"<!doctype html><html><body>Welcome to the gateway</body></html>",
     "did not answer a JSON model listing (it answered an HTML page)"),
    (200, "application/json", b"", "did not answer a JSON model listing (it answered an empty body)"),
    (200, "text/plain", b"ok", "did not answer a JSON model listing (it answered ok)"),
    (404, "text/html", b"<html><h1>Not Found</h1></html>", "answered HTTP 404 (an HTML page)"),
])
def test_a_models_listing_that_is_not_one(answering, tmp_path, status, ctype, body, says):
    url = answering(status, ctype, body)
    message = run_cli(tmp_path, "--url", url, code=exit_codes.COULD_NOT_RUN)
    assert f"GET {url}/models {says}" in message
    assert "check that --url is the API's base URL" in message and "or pass --model" in message


def test_a_200_that_is_no_event_stream_fails_the_pre_flight(answering, tmp_path):
    url = answering(200, "text/html", b"<html><body>Welcome</body></html>")
    message = run_cli(tmp_path, "--url", url, "--model", "m", code=exit_codes.COULD_NOT_RUN)
    assert (f"pre-flight failed: POST {url}/chat/completions answered HTTP 200 but no event stream (it answered an "
            "HTML page); check that --url is the API's base URL") in message


def test_protocol_h2_against_an_http1_only_server_says_to_use_h1(answering, tmp_path):
    url = answering(200, "application/json", b'{"data": [{"id": "m"}]}')
    message = run_cli(tmp_path, "--url", url, "--protocol", "h2", code=exit_codes.COULD_NOT_RUN)
    assert f"cannot reach {url}/models" in message and "try --protocol h1" in message


class _Raw:
    """A raw TCP server on loopback: ``behave(conn)`` per connection."""

    def __init__(self, behave) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}/v1"
        self.behave = behave
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                try:
                    conn.recv(65536)
                    self.behave(conn)
                except OSError:
                    pass

    def close(self) -> None:
        self.sock.close()


@pytest.mark.parametrize("behave, says", [
    (lambda c: None, "cannot reach"),                                  # reads the request, closes
    (lambda c: c.sendall(b"SSH-2.0-OpenSSH_9.6\r\n"), "cannot reach"),  # not HTTP at all
])
def test_a_server_that_is_not_http(tmp_path, behave, says):
    raw = _Raw(behave)
    try:
        message = run_cli(tmp_path, "--url", raw.url, code=exit_codes.COULD_NOT_RUN)
    finally:
        raw.close()
    assert f"{says} {raw.url}/models" in message


# --- synth --------------------------------------------------------------------------------------

def test_synth_never_crashes_on_small_settings_it_accepts():
    """A sweep of small settings: each either makes a set that keeps its limits or is refused
    with a ValueError (before the fix, the first prompt could pass max_input_tokens: IndexError,
    ZeroDivisionError)."""
    accepted = refused = 0
    for conversations in (1, 2):
        for turns_median, max_turns in ((1, 1), (1, 2), (2, 3), (5, 5)):
            for lo, mean, hi in ((250, 300, 301), (600, 700, 800), (5000, 6000, 7000), (300, 2000, 100_000)):
                for system in (0, 50, 200):
                    for out_median, out_p95, out_max in ((1, 2, 2), (2, 3, 8192), (150, 400, 8192)):
                        cfg = SynthConfig(conversations=conversations, turns_median=turns_median, max_turns=max_turns,
                                          min_input_tokens=lo, mean_input_tokens=mean, max_input_tokens=hi,
                                          system_tokens=system, output_median_tokens=out_median,
                                          output_p95_tokens=out_p95, max_output_tokens=out_max)
                        try:
                            convs = generate(cfg)
                        except ValueError:
                            refused += 1
                            continue
                        accepted += 1
                        assert len(convs) == conversations and all(1 <= len(c.turns) <= max_turns for c in convs)
                        assert all(1 <= t.output_tokens <= out_max for c in convs for t in c.turns)
    assert accepted > 20 and refused > 20, (accepted, refused)


@pytest.mark.parametrize("args", [
    ["--conversations", "1", "--turns-median", "1", "--max-turns", "1"],
    ["--conversations", "0"],
    ["--min-input-tokens", "9000", "--max-input-tokens", "100"],
    ["--system-tokens", "-1"],
    ["--turns-sigma", "-0.5"],
    ["--output-median-tokens", "500", "--output-p95-tokens", "100"],
    ["--turns-median", "50", "--max-turns", "10"],
])
def test_synth_refuses_bad_settings_naming_its_own_options(tmp_path, args):
    r = CliRunner().invoke(trajectories, ["synth", "-o", str(tmp_path / "s.jsonl"), *args])
    assert r.exit_code == exit_codes.USAGE and r.exc_info[0] is SystemExit, r.output
    error = r.output.strip().splitlines()[-1]
    assert error.startswith("Error: synth config:")
    options = {o for p in trajectories.commands["synth"].params for o in p.opts}
    named = re.findall(r"--[a-z][a-z0-9-]+", error)
    assert named and set(named) <= options, error
    assert not re.search(r"\b[a-z]+_[a-z_]+\b", error), f"a field name instead of an option: {error}"
    assert not (tmp_path / "s.jsonl").exists()
