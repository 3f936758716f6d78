"""A seeded synthetic generator of coding-agent trajectories, calibrated by default to the published
AA-AgentPerf shape: input 5K-131K tokens per call (mean ~27K), output median ~150 and P95 ~2K
tokens, up to 200 turns, tool delay 0.1-5 s (median ~1 s).

Generation has two steps. A *plan* draws the numbers: per trajectory an opening prompt (a shared
system prompt plus the task) of at least ``min_input_tokens``, a number of turns (log-normal,
at most ``max_turns``), and per turn an output length (log-normal through the median and P95), a
tool-output length and a tool delay (log-normal through the median, clipped to the range). The
trajectory stops early where the next prompt would pass ``max_input_tokens``. The plan is then
calibrated on the numbers actually drawn: output lengths and delays are scaled so their medians hit
the targets, and the scale of the tool outputs is searched (bisection) until the mean input per
call hits ``mean_input_tokens``. The *rendering* then writes text of those lengths (shell-agent
style: a THOUGHT and a command; command output) and measures every message with the tokenizer,
so each turn's ``prompt_tokens`` is the exact content token count of everything sent (system
prompt and messages, without the chat template's own tokens).

Everything random comes from one ``random.Random(seed)`` through ``random()`` only (whose sequence
Python keeps stable across versions) and the tokenizer is offline, so a seed and a config always
give the same file. The bundled ``trajectories/default.jsonl`` is ``SynthConfig()``'s output.
"""

from __future__ import annotations

import math
import random
from dataclasses import asdict, dataclass, field
from statistics import NormalDist
from typing import Any, Callable

from .model import Conversation, Turn
from .tokens import Tokenizer, load_tokenizer

GENERATOR = "agentperf.synth.v1"
SOURCE = "agentperf-native synth"
_Z95 = NormalDist().inv_cdf(0.95)


@dataclass
class SynthConfig:
    """What to generate. Token counts are under ``tokenizer``; times in seconds."""

    conversations: int = 20
    seed: int = 20261121
    min_input_tokens: int = 5_000
    max_input_tokens: int = 131_072
    mean_input_tokens: int = 27_000
    output_median_tokens: int = 150
    output_p95_tokens: int = 2_000
    max_output_tokens: int = 8_192
    turns_median: int = 36
    turns_sigma: float = 0.9
    max_turns: int = 200
    tool_delay_min_s: float = 0.1
    tool_delay_median_s: float = 1.0
    tool_delay_max_s: float = 5.0
    tool_delay_sigma: float = 0.8
    system_tokens: int = 3_000  # the shared system prompt
    tool_output_sigma: float = 1.1
    tokenizer: str = "cl100k_base"

    def check(self) -> None:
        problems = []
        if self.conversations < 1:
            problems.append("conversations must be >= 1")
        if not 0 < self.min_input_tokens < self.mean_input_tokens < self.max_input_tokens:
            problems.append("need 0 < min_input_tokens < mean_input_tokens < max_input_tokens")
        if self.system_tokens + 200 > self.min_input_tokens:
            problems.append("system_tokens must leave room for a task under min_input_tokens")
        if not 0 < self.output_median_tokens < self.output_p95_tokens <= self.max_output_tokens:
            problems.append("need 0 < output_median_tokens < output_p95_tokens <= max_output_tokens")
        if not 0 < self.tool_delay_min_s <= self.tool_delay_median_s <= self.tool_delay_max_s:
            problems.append("need 0 < tool_delay_min_s <= tool_delay_median_s <= tool_delay_max_s")
        if not 1 <= self.turns_median <= self.max_turns:
            problems.append("need 1 <= turns_median <= max_turns")
        if self.system_tokens < 0:
            problems.append("system_tokens must be >= 0")
        for name in ("turns_sigma", "tool_delay_sigma", "tool_output_sigma"):
            if not getattr(self, name) >= 0:
                problems.append(f"{name} must be >= 0")
        if problems:
            raise ValueError("synth config: " + "; ".join(problems))


class _Rng:
    """Distributions built on random.random() alone (stable across Python versions)."""

    def __init__(self, seed: int) -> None:
        self._r = random.Random(seed)
        self._normal = NormalDist()

    def uniform(self, a: float, b: float) -> float:
        return a + (b - a) * self._r.random()

    def randint(self, a: int, b: int) -> int:
        return a + min(b - a, int(self._r.random() * (b - a + 1)))

    def choice(self, seq: Any) -> Any:
        return seq[min(len(seq) - 1, int(self._r.random() * len(seq)))]

    def lognormal(self, median: float, sigma: float) -> float:
        u = min(max(self._r.random(), 1e-12), 1 - 1e-12)
        return median * math.exp(sigma * self._normal.inv_cdf(u))


@dataclass
class _PlanConv:
    task_tokens: int
    outputs: list[int]
    tool_units: list[float]  # tool-output lengths before scaling
    delays: list[float]
    tools: list[int] = field(default_factory=list)


def _median(xs: list[float]) -> float:
    s = sorted(xs)
    n = len(s)
    return s[n // 2] if n % 2 else 0.5 * (s[n // 2 - 1] + s[n // 2])


def _inputs(cfg: SynthConfig, p: _PlanConv, scale: float) -> tuple[list[int], list[int]]:
    """Input tokens per call and the scaled tool outputs, truncated where the context would overflow."""
    size = cfg.system_tokens + p.task_tokens
    inputs, tools = [], []
    for out, unit in zip(p.outputs, p.tool_units):
        if size > cfg.max_input_tokens or (inputs and len(inputs) >= cfg.max_turns):
            break
        inputs.append(size)
        tool = max(8, min(16_000, int(round(unit * scale))))
        tools.append(tool)
        size += out + tool
    return inputs, tools


def plan(cfg: SynthConfig) -> list[_PlanConv]:
    """The numbers of every trajectory, calibrated (see the module docstring)."""
    cfg.check()
    rng = _Rng(cfg.seed)
    out_sigma = math.log(cfg.output_p95_tokens / cfg.output_median_tokens) / _Z95
    # the opening prompt: min_input_tokens + 100..5000, never past max_input_tokens (the first call always fits)
    task_hi = min(cfg.min_input_tokens + 5_000, cfg.max_input_tokens) - cfg.system_tokens
    task_lo = min(cfg.min_input_tokens + 100 - cfg.system_tokens, task_hi)
    convs = []
    for _ in range(cfg.conversations):
        turns = max(2, min(cfg.max_turns, int(round(rng.lognormal(cfg.turns_median, cfg.turns_sigma)))))
        task = rng.randint(task_lo, task_hi)
        convs.append(_PlanConv(
            task_tokens=task,
            outputs=[rng.lognormal(cfg.output_median_tokens, out_sigma) for _ in range(turns)],
            tool_units=[rng.lognormal(1.0, cfg.tool_output_sigma) for _ in range(turns)],
            delays=[rng.lognormal(cfg.tool_delay_median_s, cfg.tool_delay_sigma) for _ in range(turns)]))
    # Outputs: in log space, shift the drawn median onto the target and stretch the drawn P95 onto it.
    drawn = sorted(o for c in convs for o in c.outputs)
    med, p95 = _median(drawn), drawn[min(len(drawn) - 1, int(0.95 * len(drawn)))]
    stretch = math.log(cfg.output_p95_tokens / cfg.output_median_tokens) / math.log(p95 / med) if p95 > med else 1.0
    delay_scale = cfg.tool_delay_median_s / _median([d for c in convs for d in c.delays])
    for c in convs:
        c.outputs = [max(1, min(cfg.max_output_tokens, int(round(cfg.output_median_tokens * (o / med) ** stretch))))
                     for o in c.outputs]
        c.delays = [round(min(cfg.tool_delay_max_s, max(cfg.tool_delay_min_s, d * delay_scale)), 3) for d in c.delays]

    def mean_input(scale: float) -> float:
        total = n = 0
        for c in convs:
            ins, _ = _inputs(cfg, c, scale)
            total += sum(ins)
            n += len(ins)
        return total / n

    lo, hi = math.log(0.01), math.log(20_000.0)
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        if mean_input(math.exp(mid)) < cfg.mean_input_tokens:
            lo = mid
        else:
            hi = mid
    scale = math.exp(0.5 * (lo + hi))
    reached = mean_input(scale)
    if abs(reached - cfg.mean_input_tokens) > 0.02 * cfg.mean_input_tokens:
        raise ValueError(f"synth config: the mean input per call cannot reach {cfg.mean_input_tokens} tokens "
                         f"(closest: {reached:.0f}) with these turn counts and output lengths; change turns_median, "
                         "turns_sigma or mean_input_tokens")
    for c in convs:
        ins, c.tools = _inputs(cfg, c, scale)
        c.outputs, c.delays = c.outputs[:len(ins)], c.delays[:len(ins)]
    return convs


# --- rendering ----------------------------------------------------------------------------------

_NOUNS = ("parser config request handler buffer token stream cache router schema queue client server session "
          "record index offset header payload encoder decoder registry loader writer reader worker pool batch "
          "event timer limit retry budget window frame chunk field column table query plan result value").split()
_VERBS = ("parse load read write flush encode decode check validate resolve merge split build render fetch "
          "update reset close open format count match apply emit drain").split()
_ADJ = "empty stale missing partial nested invalid default cached pending raw current previous final".split()
_MODULES = ("core utils io config parsing network storage models views cli compat errors types "
            "serializers fields validators backends handlers").split()
_PKGS = "src lib app pkg toolkit service engine".split()
_ERRORS = "ValueError KeyError TypeError IndexError RuntimeError AttributeError AssertionError".split()
_WORDS = ("the a an this that it we when if then so because after before while with without for from into "
          "is was will should must can does not only also still again now first next").split()


def _ident(rng: _Rng) -> str:
    return f"{rng.choice(_VERBS)}_{rng.choice(_NOUNS)}" if rng.uniform(0, 1) < 0.6 else rng.choice(_NOUNS)


def _path(rng: _Rng) -> str:
    return f"{rng.choice(_PKGS)}/{rng.choice(_MODULES)}/{rng.choice(_NOUNS)}.py"


def _sentence(rng: _Rng) -> str:
    forms = (
        lambda: f"The {rng.choice(_ADJ)} {rng.choice(_NOUNS)} is passed to `{_ident(rng)}` before it is checked.",
        lambda: f"I will {rng.choice(_VERBS)} the {rng.choice(_NOUNS)} in {_path(rng)} and run the tests again.",
        lambda: f"`{_ident(rng)}` raises {rng.choice(_ERRORS)} when the {rng.choice(_NOUNS)} is {rng.choice(_ADJ)}.",
        lambda: " ".join(rng.choice(_WORDS + _NOUNS) for _ in range(rng.randint(6, 16))).capitalize() + ".",
        lambda: f"Line {rng.randint(10, 900)} of {_path(rng)} reads the {rng.choice(_NOUNS)} {rng.choice(_WORDS)} "
                f"the {rng.choice(_NOUNS)} is {rng.choice(_ADJ)}.",
    )
    return rng.choice(forms)()


def _code_line(rng: _Rng) -> str:
    ind = "    " * rng.randint(0, 3)
    forms = (
        lambda: f"{ind}{_ident(rng)} = {_ident(rng)}({rng.choice(_NOUNS)}, {rng.choice(_NOUNS)}={rng.randint(0, 64)})",
        lambda: f"{ind}if {rng.choice(_NOUNS)} is None or not {rng.choice(_NOUNS)}.{rng.choice(_NOUNS)}:",
        lambda: f"{ind}return self.{rng.choice(_NOUNS)}[{rng.choice(_NOUNS)}]",
        lambda: f"{ind}def {_ident(rng)}(self, {rng.choice(_NOUNS)}, {rng.choice(_NOUNS)}=None):",
        lambda: f"{ind}raise {rng.choice(_ERRORS)}(f\"{rng.choice(_ADJ)} {rng.choice(_NOUNS)}: {{{rng.choice(_NOUNS)}!r}}\")",
        lambda: f"{ind}for {rng.choice(_NOUNS)} in self.{rng.choice(_NOUNS)}s:",
        lambda: f"{ind}# {' '.join(rng.choice(_WORDS + _NOUNS) for _ in range(rng.randint(3, 9)))}",
        lambda: f"from {rng.choice(_PKGS)}.{rng.choice(_MODULES)} import {_ident(rng)}",
        lambda: f"{ind}self.{rng.choice(_NOUNS)} = {rng.choice(_NOUNS)}.get(\"{rng.choice(_NOUNS)}\", {rng.randint(0, 9)})",
        lambda: "",
    )
    return rng.choice(forms)()


def _output_line(rng: _Rng, kind: str, n: int) -> str:
    if kind == "cat":
        return f"{n:>5}\t{_code_line(rng)}"
    if kind == "grep":
        return f"{_path(rng)}:{rng.randint(1, 900)}:{_code_line(rng).strip()}"
    if kind == "test":
        status = rng.choice(("PASSED", "PASSED", "PASSED", "FAILED", "PASSED"))
        return f"tests/test_{rng.choice(_MODULES)}.py::test_{_ident(rng)} {status} [{rng.randint(0, 100):>3}%]"
    if kind == "ls":
        return f"-rw-r--r-- 1 agent agent {rng.randint(100, 99999):>6} Nov {rng.randint(1, 30):>2} 10:{rng.randint(0, 59):02d} {_path(rng)}"
    return f"{'+-'[rng.randint(0, 1)]}{_code_line(rng)}"


class _Writer:
    """Text of about N tokens, from a line generator; counted line by line, measured whole."""

    def __init__(self, tok: Tokenizer) -> None:
        self.tok = tok

    def count(self, text: str) -> int:
        return len(self.tok.encode(text))

    def lines(self, target: int, make: Callable[[int], str], head: str = "", tail: str = "") -> str:
        parts = [head] if head else []
        used = self.count(head) + self.count(tail)
        i = 0
        while used < target:
            i += 1
            line = make(i) + "\n"
            used += self.count(line)
            parts.append(line)
        return "".join(parts) + tail


def _system_prompt(rng: _Rng, w: _Writer, tokens: int) -> str:
    head = ("You are a software engineering agent working in a Linux shell inside a Python repository.\n"
            "Every reply has a THOUGHT section and exactly one bash command in a ```bash block; the command "
            "runs in a fresh subshell and its output comes back in the next message.\n\n## Conventions\n")
    return w.lines(tokens, lambda i: f"{i}. {_sentence(rng)} {_sentence(rng)}", head=head,
                   tail="\nWhen the tests pass, submit the patch with `git diff > patch.txt`.")


def _task(rng: _Rng, w: _Writer, tokens: int) -> str:
    head = (f"Fix the following issue in this repository.\n\n## Issue: {_ident(rng)} fails on "
            f"{rng.choice(_ADJ)} {rng.choice(_NOUNS)}\n\n")
    body_tokens = max(50, tokens // 3)
    body = w.lines(body_tokens, lambda i: _sentence(rng), head=head)
    listing = w.lines(tokens - w.count(body), lambda i: _output_line(rng, "ls", i),
                      head="\n## Repository files\n", tail="\nStart by reading the code that the issue mentions.")
    return body + listing


def _reply(rng: _Rng, w: _Writer, tokens: int) -> str:
    command = rng.choice((
        lambda: f"sed -n '{rng.randint(1, 400)},{rng.randint(401, 800)}p' {_path(rng)}",
        lambda: f"grep -rn \"{_ident(rng)}\" {rng.choice(_PKGS)}/",
        lambda: f"python -m pytest tests/test_{rng.choice(_MODULES)}.py -x -q",
        lambda: f"ls -la {rng.choice(_PKGS)}/{rng.choice(_MODULES)}",
        lambda: "git diff",
    ))()
    if tokens > 400 and rng.uniform(0, 1) < 0.7:  # long replies write code
        thought = w.lines(max(8, tokens // 4), lambda i: _sentence(rng), head="THOUGHT: ")
        path = _path(rng)
        code = w.lines(tokens - w.count(thought) - 12, lambda i: _code_line(rng),
                       head=f"\n```bash\ncat > {path} <<'EOF'\n", tail="EOF\npython -m pytest -q -x\n```")
        return thought + code
    tail = f"\n```bash\n{command}\n```"
    return w.lines(max(1, tokens), lambda i: _sentence(rng), head="THOUGHT: ", tail=tail)


def _observation(rng: _Rng, w: _Writer, tokens: int) -> str:
    kind = rng.choice(("cat", "cat", "grep", "test", "ls", "diff"))
    code = 1 if kind == "test" and rng.uniform(0, 1) < 0.5 else 0
    return w.lines(tokens, lambda i: _output_line(rng, kind, i), head=f"[exit code {code}]\n")


def generate(cfg: SynthConfig | None = None) -> list[Conversation]:
    """The trajectories of ``cfg`` (default: the bundled set's config)."""
    cfg = cfg or SynthConfig()
    plans = plan(cfg)
    tok = load_tokenizer(cfg.tokenizer)
    w = _Writer(tok)
    rng = _Rng(cfg.seed ^ 0x5EED)
    system = _system_prompt(rng, w, cfg.system_tokens)
    system_n = w.count(system)
    conversations = []
    for index, p in enumerate(plans):
        task = _task(rng, w, p.task_tokens)
        size = system_n + w.count(task)
        pending: list[dict[str, Any]] = [{"role": "user", "content": task}]
        turns = []
        for out, tool, delay in zip(p.outputs, p.tools, p.delays):
            if size > cfg.max_input_tokens and turns:  # rendering ran past the plan: stop at the limit
                break
            turns.append(Turn(messages=pending, output_tokens=out, prompt_tokens=size, tool_delay_s=delay))
            reply = _reply(rng, w, out)
            obs = _observation(rng, w, tool)
            size += w.count(reply) + w.count(obs)
            pending = [{"role": "assistant", "content": reply}, {"role": "user", "content": obs}]
        turns[-1].tool_delay_s = 0.0  # nothing follows the last call
        conversations.append(Conversation(
            turns=turns, system=system, id=f"synth-{index:04d}",
            metadata={"source": SOURCE, "language": "python", "generator": GENERATOR, "seed": cfg.seed,
                      "index": index, "tokenizer": cfg.tokenizer,
                      "token_counts": "prompt_tokens = content tokens of the system prompt and all messages "
                                      "sent, under the tokenizer, without chat-template tokens"}))
    return conversations


def config_dict(cfg: SynthConfig) -> dict[str, Any]:
    return asdict(cfg)
