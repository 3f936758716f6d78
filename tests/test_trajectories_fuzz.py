"""Property tests of the trajectory importers on arbitrary and mutated input: a file either imports or
raises the package's own error (TrajectoryError, of which SourceError is one), whose message tells the
user what to fix, never another exception (which the command line would show as a traceback).

Inputs: the importer fixtures (tests/data/trajectories) with parts replaced, deleted or added;
JSON documents and lines built from the keys those fixtures use; and raw bytes. Every file is read
with each format forced and with the format detected. What imports must also survive schema v1:
written with write_jsonl, read back by load_native.

Bounded: a fixed number of examples, drawn deterministically (derandomize), so that CI stays
reproducible and takes ~20 s. AGENTPERF_FUZZ_EXPLORE=1 draws new, and many more, examples.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agentperf_native.trajectories import (FORMATS, ImportOptions, ImportResult, TrajectoryError,
                                           conversation_to_dict, detect_format, import_file, load_native,
                                           write_jsonl)

DATA = Path(__file__).parent / "data" / "trajectories"
FIXTURES = sorted(p for p in DATA.iterdir() if p.is_file())
EXPLORE = os.environ.get("AGENTPERF_FUZZ_EXPLORE") == "1"


def bounded(examples: int):
    return settings(max_examples=examples * (20 if EXPLORE else 1), deadline=None, derandomize=not EXPLORE,
                    database=None, suppress_health_check=list(HealthCheck))


def parsed(line: str) -> Any:
    try:
        return json.loads(line)
    except json.JSONDecodeError:
        return None


def documents(path: Path) -> Any:
    """A fixture as JSON: the list of its lines' objects (JSON Lines; a line that is not JSON, which
    a fixture may hold on purpose, is left out), or its one document."""
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".jsonl":
        return [obj for obj in map(parsed, text.splitlines()) if obj is not None]
    return json.loads(text)


# Starting points of the mutations: (file name, JSON value, written as JSON Lines). The fixtures, and
# a schema v1 file made from one of them.
SEEDS = [(p.name, documents(p), p.suffix == ".jsonl") for p in FIXTURES]
SEEDS.append(("native.jsonl", [conversation_to_dict(c) for c in import_file(
    DATA / "openai_messages.jsonl", options=ImportOptions(estimate_output_tokens=False)).conversations], True))


def walk(obj: Any, path: tuple = ()) -> list[tuple]:
    """Every place in a JSON value, as the keys / indices leading to it."""
    out = [path]
    if isinstance(obj, dict):
        for k, v in obj.items():
            out += walk(v, path + (k,))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            out += walk(v, path + (i,))
    return out


def keys_and_strings(obj: Any, keys: set, strings: set) -> None:
    if isinstance(obj, dict):
        for k, v in obj.items():
            keys.add(k)
            keys_and_strings(v, keys, strings)
    elif isinstance(obj, list):
        for v in obj:
            keys_and_strings(v, keys, strings)
    elif isinstance(obj, str) and len(obj) < 40:
        strings.add(obj)


KEYS: set = set()
STRINGS: set = set()
for _name, _seed, _lines in SEEDS:
    keys_and_strings(_seed, KEYS, STRINGS)

# JSON values in the shapes the importers look for: the fixtures' keys and short strings (roles,
# types, formats), numbers of every kind Python's json reads (NaN and Infinity included).
SCALARS = (st.none() | st.booleans() | st.integers(min_value=-(2 ** 70), max_value=2 ** 70)
           | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=12)
           | st.sampled_from(sorted(STRINGS)))
JSON = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
    st.sampled_from(sorted(KEYS)) | st.text(max_size=6), inner, max_size=6), max_leaves=24)


@st.composite
def mutated(draw, original: Any) -> Any:
    """The value with 1-4 places replaced by another JSON value, deleted, or given a new member."""
    obj = json.loads(json.dumps(original))
    for _ in range(draw(st.integers(1, 4))):
        path = draw(st.sampled_from(walk(obj)))
        action = draw(st.sampled_from(["replace", "delete", "insert"]))
        if not path:
            obj = draw(JSON) if action == "replace" else obj
            continue
        parent = obj
        for step in path[:-1]:
            parent = parent[step]
        last = path[-1]
        if action == "replace":
            parent[last] = draw(JSON | st.sampled_from([[], {}, "", 0, -1, None, True]))
        elif action == "delete":
            del parent[last]
        elif isinstance(parent[last], dict):
            parent[last][draw(st.sampled_from(sorted(KEYS)))] = draw(JSON)
        elif isinstance(parent[last], list):
            parent[last].insert(draw(st.integers(0, len(parent[last]))), draw(JSON))
    return obj


def write(folder: Path, name: str, obj: Any, lines: bool) -> Path:
    path = folder / name
    with path.open("w", encoding="utf-8") as f:
        if lines and isinstance(obj, list):
            for item in obj:
                f.write(json.dumps(item) + "\n")
        else:
            json.dump(obj, f, indent=1)
    return path


def import_or_clear_error(path: Path, estimate: bool = False) -> int:
    """Reads `path` detected and as every format; returns how many reads imported (conversations or
    only notes)."""
    try:
        assert detect_format(path) in FORMATS
    except TrajectoryError as e:
        assert str(e)
    imported = 0
    options = ImportOptions(estimate_output_tokens=estimate)
    for fmt in (None, *FORMATS):
        try:
            result = import_file(path, fmt, options)
        except TrajectoryError as e:
            assert str(path) in str(e) or fmt is None or "format" in str(e), f"{fmt}: {e}"
            continue
        assert isinstance(result, ImportResult)
        imported += 1
        if result.conversations:
            again = path.with_name(path.name + ".v1.jsonl")
            write_jsonl(result.conversations, again)
            assert len(load_native(again)) == len(result.conversations)
    return imported


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return tmp_path_factory.mktemp("fuzz")


@pytest.mark.parametrize("seed", SEEDS, ids=[name for name, _, _ in SEEDS])
def test_the_seeds_import_as_they_are(seed, folder):
    # The starting points of the mutations are themselves good files (else the mutations test little).
    path = write(folder, *seed)
    assert isinstance(import_file(path, options=ImportOptions(estimate_output_tokens=False)), ImportResult)
    assert import_or_clear_error(path) >= 1


def test_the_seeds_cover_every_format(folder):
    assert {detect_format(write(folder, *seed)) for seed in SEEDS} == set(FORMATS)


@bounded(1000)
@given(data=st.data(), estimate=st.booleans())
def test_mutated_files_import_or_raise_a_clear_error(folder, data, estimate):
    name, seed, lines = data.draw(st.sampled_from(SEEDS))
    import_or_clear_error(write(folder, name, data.draw(mutated(seed)), lines), estimate)


@bounded(400)
@given(obj=JSON, lines=st.booleans(), suffix=st.sampled_from([".json", ".jsonl", ".traj"]))
def test_arbitrary_json_imports_or_raises_a_clear_error(folder, obj, lines, suffix):
    import_or_clear_error(write(folder, "arbitrary" + suffix, obj, lines))


@bounded(200)
@given(lines=st.lists(st.binary(max_size=40) | JSON.map(lambda v: json.dumps(v).encode()), min_size=1, max_size=6),
       suffix=st.sampled_from([".json", ".jsonl"]))
def test_arbitrary_bytes_import_or_raise_a_clear_error(folder, lines, suffix):
    path = folder / ("bytes" + suffix)
    path.write_bytes(b"\n".join(line.replace(b"\n", b" ") for line in lines))
    import_or_clear_error(path)


def seed(name: str) -> Any:
    return json.loads(json.dumps(next(obj for n, obj, _ in SEEDS if n == name)))


def changed(name: str, change) -> tuple[str, Any, bool]:
    obj = seed(name)
    change(obj)
    return name, obj, name.endswith(".jsonl")


# The failures these tests found, each as its smallest file: (file, what the import must give:
# None = it imports, else a fragment of the TrajectoryError's message).
FOUND = {
    "tool call whose function is not an object": (changed(
        "openai_messages.jsonl", lambda o: o[0]["messages"][2]["tool_calls"][0].update(function=True)), None),
    "mini-swe-agent info not an object": (changed("mini_swe_agent.traj.json", lambda o: o.update(info=[1])), None),
    "mini-swe-agent choices[0] not an object": (changed(
        "mini_swe_agent.traj.json", lambda o: o["messages"][2]["extra"]["response"].update(choices=[True])), None),
    "mini-swe-agent config not an object": (changed(
        "mini_swe_agent.traj.json", lambda o: o["info"].update(config=[1])), None),
    "mini-swe-agent without messages": (changed(
        "mini_swe_agent.traj.json", lambda o: o.pop("messages")), "field 'messages' must be a list"),
    "mini-swe-agent message without a role": (changed(
        "mini_swe_agent.traj.json", lambda o: o["messages"][1].pop("role")),
        "a message must be an object with a string 'role'"),
    "swe-agent tool_call_ids not a list": (changed(
        "swe_agent.traj", lambda o: o["history"][4].update(tool_call_ids=5)), None),
    "swe-agent trajectory not a list": (changed("swe_agent.traj", lambda o: o.update(trajectory=True)), None),
    "kv-cache-tester api_time without t": (changed("kv_cache_tester.json", lambda o: (
        o["requests"][0].pop("t"), o["requests"][1].pop("think_time"))), None),
    "kv-cache-tester models not a list": (changed("kv_cache_tester.json", lambda o: o.update(models=1.5)), None),
}


@pytest.mark.parametrize("case", FOUND, ids=list(FOUND))
def test_what_the_property_tests_found(case, folder):
    (name, obj, lines), error = FOUND[case]
    path = write(folder, name, obj, lines)
    options = ImportOptions(estimate_output_tokens=False)
    if error is None:
        assert import_file(path, options=options).conversations
    else:
        with pytest.raises(TrajectoryError, match=error):
            import_file(path, options=options)


@pytest.mark.parametrize("fmt", ["native", "openai-messages", "mooncake"])
def test_json_lines_that_are_not_utf8_say_so(fmt, folder):
    path = folder / "latin1.jsonl"
    path.write_bytes(b'{"messages": []}\n\x80\n')
    with pytest.raises(TrajectoryError, match="not UTF-8 text"):
        import_file(path, fmt)
