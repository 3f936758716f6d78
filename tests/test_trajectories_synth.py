"""The synthetic generator, the bundled default set it made, and `inspect` on it."""

import hashlib
from pathlib import Path

import pytest
from click.testing import CliRunner

pytest.importorskip("tiktoken", reason="the generator counts tokens with tiktoken (and bpe-openai)")

import agentperf_native as ap  # noqa: E402
from agentperf_native.cli.trajectories import trajectories  # noqa: E402
from agentperf_native.trajectories import SynthConfig, compute_stats, generate, load_native, write_jsonl  # noqa: E402
from agentperf_native.trajectories.stats import compare_to_target  # noqa: E402
from agentperf_native.trajectories.tokens import load_tokenizer  # noqa: E402

DEFAULT = Path(__file__).resolve().parents[1] / "trajectories" / "default.jsonl"


@pytest.fixture(scope="module")
def default_set():
    return load_native(DEFAULT)


def test_default_set_is_what_the_documented_command_generates(tmp_path):
    # trajectories/README.md: agentperf-native trajectories synth -o trajectories/default.jsonl
    out = tmp_path / "default.jsonl"
    r = CliRunner().invoke(trajectories, ["synth", "-o", str(out)])
    assert r.exit_code == 0, r.output
    assert hashlib.sha256(out.read_bytes()).hexdigest() == hashlib.sha256(DEFAULT.read_bytes()).hexdigest()


def test_default_set_size_and_loaders(default_set):
    assert DEFAULT.stat().st_size < 3_000_000
    assert len(default_set) == SynthConfig().conversations
    assert len(ap.load_conversations(DEFAULT)) == len(default_set)  # the engine's own loader reads it too
    assert ap.bundled_path() == DEFAULT or ap.bundled_path().read_bytes() == DEFAULT.read_bytes()


def test_default_set_matches_the_aa_agentperf_shape(default_set):
    stats = compute_stats(default_set)
    cfg = SynthConfig()
    assert stats.input_tokens_estimated == 0  # every turn records its prompt tokens
    assert abs(stats.input_tokens.mean - 27_000) <= 0.10 * 27_000
    assert abs(stats.output_tokens.p(50) - 150) <= 0.10 * 150
    assert abs(stats.output_tokens.p(95) - 2_000) <= 0.25 * 2_000
    assert 5_000 <= stats.input_tokens.min and stats.input_tokens.max <= 131_072
    assert stats.turns_per_session.max <= 200
    assert 0.1 <= stats.tool_delay_s.min and stats.tool_delay_s.max <= 5.0
    assert abs(stats.tool_delay_s.p(50) - 1.0) <= 0.15
    assert all(ok for *_, ok in compare_to_target(stats, cfg))


def test_recorded_prompt_tokens_are_the_exact_content_counts(default_set):
    tok = load_tokenizer("cl100k_base")
    conv = min(default_set, key=lambda c: len(c.turns))
    sent = [conv.system]
    for turn in conv.turns:
        sent.extend(m["content"] for m in turn.messages)
        assert turn.prompt_tokens == sum(len(tok.encode(t)) for t in sent)
    assert all(len(t.messages) == 2 and [m["role"] for m in t.messages] == ["assistant", "user"] for t in conv.turns[1:])
    assert conv.turns[-1].tool_delay_s == 0.0
    assert conv.metadata["source"] == "agentperf-native synth" and conv.metadata["language"] == "python"


def test_generation_is_seeded_and_configurable(tmp_path):
    cfg = SynthConfig(conversations=4, seed=5, mean_input_tokens=12_000, turns_median=12, output_median_tokens=100,
                      output_p95_tokens=900, max_input_tokens=40_000)
    a, b = generate(cfg), generate(cfg)
    write_jsonl(a, tmp_path / "a.jsonl")
    write_jsonl(b, tmp_path / "b.jsonl")
    assert (tmp_path / "a.jsonl").read_bytes() == (tmp_path / "b.jsonl").read_bytes()
    other = generate(SynthConfig(**{**cfg.__dict__, "seed": 6}))
    assert [len(c.turns) for c in other] != [len(c.turns) for c in a] or \
        other[0].turns[0].messages != a[0].turns[0].messages
    stats = compute_stats(a)
    assert abs(stats.input_tokens.mean - 12_000) <= 0.10 * 12_000 and stats.input_tokens.max <= 40_000


def test_impossible_configs_are_explained():
    with pytest.raises(ValueError, match="mean_input_tokens"):
        generate(SynthConfig(mean_input_tokens=3_000))
    with pytest.raises(ValueError, match="cannot reach"):
        generate(SynthConfig(conversations=3, mean_input_tokens=6_000, turns_median=150, turns_sigma=0.1))


def test_inspect_prints_the_shape_and_writes_histograms(tmp_path):
    pytest.importorskip("matplotlib", reason="--plot draws with matplotlib")
    r = CliRunner().invoke(trajectories, ["inspect", str(DEFAULT), "--targets", "--plot", str(tmp_path / "plots")])
    assert r.exit_code == 0, r.output
    for label in ("sessions: 20", "turns/session", "input tokens", "output tokens", "tool delay s",
                  "theoretical prefix-cache hit rate", "mean input tokens", "wrote 4 histograms"):
        assert label in r.output
    assert "OFF" not in r.output
    pngs = sorted(p.name for p in (tmp_path / "plots").iterdir())
    assert pngs == ["input_tokens.png", "output_tokens.png", "tool_delay_s.png", "turns_per_session.png"]
    assert all((tmp_path / "plots" / p).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in pngs)
