"""The SSE parser through the Python binding (agentperf_native._core.SseParser).

Corpus: tests/data/sse/<name>.txt is a raw (de-chunked) SSE response body and <name>.expected the
hand-written list of events it holds, one line per event:
``output=0|1 done=0|1 usage=0|1 error=0|1 malformed=0|1 prompt=N completion=N cached=N``.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from agentperf_native import _core


class SseParser(_core.SseParser):
    """The native parser; events compared without their raw ``text`` span (checked on its own below)."""

    def feed(self, data):  # type: ignore[override]
        events = super().feed(data)
        for e in events:
            e.pop("text")
        return events


CORPUS_DIR = Path(__file__).parent / "data" / "sse"
CORPUS = sorted(p.stem for p in CORPUS_DIR.glob("*.txt"))
# Bodies whose last event has no closing blank line.
ENDS_CUT = {"truncated_tail"}


def _expected(name: str) -> list[dict]:
    events = []
    for line in (CORPUS_DIR / f"{name}.expected").read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        fields = dict(item.split("=", 1) for item in line.split())
        events.append(
            {
                "output": fields["output"] == "1",
                "done": fields["done"] == "1",
                "usage": fields["usage"] == "1",
                "error": fields["error"] == "1",
                "malformed": fields["malformed"] == "1",
                "prompt_tokens": int(fields["prompt"]),
                "completion_tokens": int(fields["completion"]),
                "cached_tokens": int(fields["cached"]),
            }
        )
    return events


def _feed_pieces(parser, body: bytes, cuts) -> list[dict]:
    events = []
    start = 0
    for end in list(cuts) + [len(body)]:
        events.extend(parser.feed(body[start:end]))
        start = end
    return events


def test_corpus_is_there():
    assert len(CORPUS) >= 20
    for name in CORPUS:
        assert (CORPUS_DIR / f"{name}.expected").exists(), name
        assert _expected(name), name


@pytest.mark.parametrize("name", CORPUS)
def test_whole_body(name):
    body = (CORPUS_DIR / f"{name}.txt").read_bytes()
    parser = SseParser()
    assert parser.feed(body) == _expected(name)
    assert parser.has_partial() == (name in ENDS_CUT)
    parser.reset()
    assert not parser.has_partial()
    assert parser.feed(bytearray(body)) == _expected(name)


@pytest.mark.parametrize("name", CORPUS)
def test_split_at_every_offset(name):
    body = (CORPUS_DIR / f"{name}.txt").read_bytes()
    expected = _expected(name)
    parser = SseParser()
    for i in range(len(body) + 1):
        parser.reset()
        got = _feed_pieces(parser, body, [i])
        assert got == expected, f"{name}: split at {i}"
        assert parser.has_partial() == (name in ENDS_CUT), f"{name}: split at {i}"


@pytest.mark.parametrize("name", CORPUS)
def test_random_multi_piece_splits(name):
    body = (CORPUS_DIR / f"{name}.txt").read_bytes()
    expected = _expected(name)
    rng = random.Random(f"sse-{name}")  # fixed seed per file
    for round_ in range(100):
        n_cuts = rng.randint(1, min(40, len(body)))
        cuts = sorted(rng.randint(0, len(body)) for _ in range(n_cuts))  # repeats: empty pieces
        parser = SseParser()
        assert _feed_pieces(parser, body, cuts) == expected, f"{name}: round {round_}, cuts {cuts}"


def test_byte_at_a_time_memoryview():
    body = (CORPUS_DIR / "crlf_line_endings.txt").read_bytes()
    view = memoryview(body)
    parser = SseParser()
    events = []
    for i in range(len(body)):
        events.extend(parser.feed(view[i : i + 1]))
    assert events == _expected("crlf_line_endings")


def test_feed_rejects_str():
    with pytest.raises(TypeError):
        SseParser().feed("data: [DONE]\n\n")


def test_inspect_sse_data_str_and_bytes():
    chunk = '{"choices":[{"delta":{"content":"h\\u00e9 \\"x\\""}}],"usage":{"prompt_tokens":7,"completion_tokens":2,"prompt_tokens_details":{"cached_tokens":4}}}'
    for data in (chunk, chunk.encode()):
        d = _core.inspect_sse_data(data)
        assert d == {
            "output": True,
            "done": False,
            "usage": True,
            "error": False,
            "malformed": False,
            "prompt_tokens": 7,
            "completion_tokens": 2,
            "cached_tokens": 4,
            "text": b'h\\u00e9 \\"x\\"',
        }
    assert _core.inspect_sse_data("[DONE]")["done"]
    assert _core.inspect_sse_data(b"oops")["malformed"]
    assert not _core.inspect_sse_data('{"choices":[{"delta":{"content":""}}]}')["output"]
    assert not _core.inspect_sse_data('{"choices":[{"delta":{"content":null}}]}')["output"]
    assert not _core.inspect_sse_data('{"choices":[{"delta":{"tool_calls":[]}}]}')["output"]
    assert _core.inspect_sse_data('{"choices":[{"delta":{"tool_calls":[{"index":0}]}}]}')["output"]
    assert not _core.inspect_sse_data('{"usage":null}')["usage"]
    assert _core.inspect_sse_data('{"usage":{"prompt_cache_hit_tokens":9}}')["cached_tokens"] == 9
    assert _core.inspect_sse_data('{"error":{"message":"x"}}')["error"]
    with pytest.raises(TypeError):
        _core.inspect_sse_data(12)


@pytest.mark.parametrize("name", CORPUS)
def test_text_spans_are_identical_at_every_split(name):
    body = (CORPUS_DIR / f"{name}.txt").read_bytes()
    whole = [e["text"] for e in _core.SseParser().feed(body)]
    for i in range(len(body) + 1):
        parser = _core.SseParser()
        got = [e["text"] for e in parser.feed(body[:i]) + parser.feed(body[i:])]
        assert got == whole, f"{name}: split at {i}"
