"""Closed-form capacity of the simulator's batching model (one replica).

For N agents that each replay the same fixed request over and over — a prompt of ``P`` tokens of
which ``C`` are served from the prefix cache, exactly ``L`` output tokens, and a fixed tool delay
``D`` (0: the next request is sent as soon as the previous one ends) — :func:`predict` gives the
steady-state P25 output speed and P95 TTFT that the engine measures, and :func:`max_concurrency`
the largest N that meets an SLO tier. ``SIMULATOR.md`` derives the formulas; in short, with
``k`` tokens per step, ``n = ceil((L-1)/k)`` decode steps, ``U = P - C`` prefilled tokens in
``m`` prefill steps, ``B`` the batch limit and ``step(d, x)`` the duration of a step with ``d``
decoding sequences and ``x`` other requests' prefill tokens:

- Every request passes through the engine in ``1 + m + n`` steps when the batch has room (one
  step waiting for the step in progress to end, ``m`` prefill steps ending with its first token,
  ``n`` decode steps), and the batch is full once ``N (m + n) / (1 + m + n) > B``; then each slot
  turns over every ``m + n`` steps and an agent's cycle is ``N (m + n) / B`` steps.
- Unsaturated: with ``x = (N - 1) / (1 + m + n)`` other requests per step,
  ``TTFT = step(x n, x U) + m step(x n, x U) + U / rate`` (no waiting step when N = 1) and
  ``speed = (L - 1) / (n step(1 + x n, x U))``.
- Saturated: every step holds ``B n / (m + n)`` decoding sequences and ``B / (m + n)`` prefills, so
  all steps last ``T``; ``TTFT = (N (m + n) / B - n) T`` (rounded up to whole steps for the P95)
  and ``speed = (L - 1) / (n T)``.

These hold when the agents' phases are spread (as a ramp or real workloads spread them) and, in
saturation, exactly when N is a multiple of B; lumpier phases make the P95 TTFT larger. With a
tool delay the arrivals fall anywhere in a step; that case is a mean-value approximation
(waiting 0.95 of a step at the P95, decoding fraction from the cycle time, a fixed point).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from .presets import BatchingParams
from ..tiers import Tier


@dataclass(frozen=True)
class WorkloadShape:
    """The request every agent repeats. ``cached_tokens`` None: derived (see :func:`steady_cached_tokens`)."""

    prompt_tokens: int
    output_tokens: int
    cached_tokens: int | None = None
    tool_delay_s: float = 0.0


@dataclass(frozen=True)
class Prediction:
    concurrency: int
    saturated: bool           #: the batch is full and requests queue for a slot
    decoding: float           #: mean decoding sequences per step
    step_s: float             #: duration of a step a request decodes in
    cycle_s: float            #: one agent's request-to-request period (tool delay included)
    ttft_p95_s: float
    ttft_mean_s: float
    output_speed_p25_tps: float
    throughput_output_tps: float  #: output tokens per second, all agents
    cached_tokens: int
    prefill_steps: int
    utilisation: float = 1.0  #: fraction of the time the replica runs a step (see :func:`utilisation`)
    power_w: float = 0.0      #: mean power of the replica's accelerators, all together (W)


def batch_limit(params: BatchingParams, workload: WorkloadShape) -> int:
    """Sequences that can run at once: max_batch, or fewer when the KV capacity binds."""
    b = params.max_batch
    if params.kv_capacity_tokens > 0:
        b = min(b, params.kv_capacity_tokens // (workload.prompt_tokens + workload.output_tokens))
    return b


def steady_cached_tokens(params: BatchingParams, workload: WorkloadShape, concurrency: int) -> int:
    """Prompt tokens served from the prefix cache once every agent has sent its prompt once.

    Each agent's prompt has its own isolation prefix, so only its own earlier requests can hit:
    all its full blocks (at most ``floor((P - 1) / block)`` of them) hit when the cache can hold
    every agent's blocks; otherwise an LRU cache that N agents cycle through misses every time.
    """
    if workload.cached_tokens is not None:
        return workload.cached_tokens
    blocks = (workload.prompt_tokens - 1) // params.block_tokens
    capacity_blocks = params.prefix_cache_tokens // params.block_tokens
    return blocks * params.block_tokens if blocks and concurrency * blocks <= capacity_blocks else 0


def _prefill_steps(params: BatchingParams, uncached: int, decoding: float) -> int:
    if params.max_batched_tokens <= 0:
        return 1
    room = params.max_batched_tokens - params.tokens_per_chunk * decoding
    return max(1, math.ceil(uncached / max(1.0, room)))


def predict(concurrency: int, params: BatchingParams, workload: WorkloadShape) -> Prediction:
    """Steady-state P25 output speed and P95 TTFT of ``concurrency`` agents on one replica."""
    if concurrency < 1:
        raise ValueError("concurrency must be >= 1")
    if workload.output_tokens < 2:
        raise ValueError("output_tokens must be >= 2 (output speed needs two tokens)")
    p = params
    N, P, L = concurrency, workload.prompt_tokens, workload.output_tokens
    k = p.tokens_per_chunk
    n = math.ceil((L - 1) / k)
    C = steady_cached_tokens(p, workload, N)
    U = max(1, P - C)
    B = batch_limit(p, workload)
    if B < 1:
        raise ValueError("one request does not fit the KV capacity")
    ctx = P + 1 + k * (n - 1) / 2  # mean context of a sequence over its decode steps
    rate = p.prefill_tokens_per_s
    m = _prefill_steps(p, U, min(N, B) * n / (n + 2))
    if workload.tool_delay_s > 0:
        return _predict_with_tool_delay(N, p, workload, n, m, U, B, ctx, C)

    def step(decoding: float, prefill_tokens: float) -> float:
        return p.step_s(decoding, decoding * ctx, prefill_tokens)

    saturated = N * (m + n) > B * (1 + m + n)
    if not saturated:
        cycle_steps = 1 + m + n
        x = (N - 1) / cycle_steps            # other agents' requests per step
        t_mine = step(1 + x * n, x * U)      # a step I decode in
        t_other = step(x * n, x * U)         # a step I wait or prefill in
        ttft = (t_other if N > 1 else 0.0) + m * t_other + U / rate
        ttft_p95 = ttft
        speed = (L - 1) / (n * t_mine)
        cycle_s = ttft + n * t_mine
        decoding = 1 + x * n
        step_s = t_mine
    else:
        y = B / (m + n)                      # admissions (and completions) per step
        t = step(y * n, y * U)
        cycle_steps = N * (m + n) / B
        ttft = (cycle_steps - n) * t
        ttft_p95 = math.ceil(cycle_steps - n - 1e-9) * t
        speed = (L - 1) / (n * t)
        cycle_s = cycle_steps * t
        decoding = y * n
        step_s = t
    # No tool delay: a request is always in the engine (N = 1: its own; more: the next one joins
    # before the last leaves), so a step is always in progress.
    return Prediction(concurrency=N, saturated=saturated, decoding=decoding, step_s=step_s, cycle_s=cycle_s,
                      ttft_p95_s=ttft_p95, ttft_mean_s=ttft, output_speed_p25_tps=speed,
                      throughput_output_tps=N * L / cycle_s, cached_tokens=C, prefill_steps=m,
                      utilisation=1.0, power_w=p.power_w(1.0))


def _predict_with_tool_delay(N: int, p: BatchingParams, w: WorkloadShape, n: int, m: int, U: int, B: int,
                             ctx: float, C: int) -> Prediction:
    # Mean-value fixed point: arrivals fall anywhere in a step; a request spends TTFT + n steps in
    # the engine and the tool delay outside it.
    rate, L, D = p.prefill_tokens_per_s, w.output_tokens, w.tool_delay_s
    t = p.step_s(1, ctx)
    ttft = ttft_p95 = t
    saturated = False
    decoding = 1.0
    for _ in range(200):
        cycle = ttft + n * t + D
        lam = (N - 1) / cycle                      # other agents' requests per second
        others_decoding = (N - 1) * n * t / cycle  # time fraction they spend decoding
        busy = min(1.0, (N - 1) * (ttft + n * t) / cycle)  # chance the engine is mid-step at an arrival
        t_mine = p.step_s(1 + others_decoding, (1 + others_decoding) * ctx, lam * t * U)
        t_other = p.step_s(others_decoding, others_decoding * ctx, lam * t * U)
        occupancy = N * (m + n) * t_mine / cycle   # mean slots held
        if occupancy <= B:
            saturated = False
            new_ttft = busy * 0.5 * t_other + m * t_other + U / rate
            new_p95 = busy * 0.95 * t_other + m * t_other + U / rate
            decoding = 1 + others_decoding
            new_t = t_mine
        else:
            saturated = True
            y_t = B / ((m + n))                    # admissions per step
            new_t = p.step_s(y_t * n, y_t * n * ctx, y_t * U)
            throughput = B / ((m + n) * new_t)     # requests per second
            new_ttft = max(m * new_t, N / throughput - n * new_t - D)
            new_p95 = new_ttft
            decoding = y_t * n
        if abs(new_t - t) < 1e-12 and abs(new_ttft - ttft) < 1e-12:
            break
        t, ttft, ttft_p95 = 0.5 * (t + new_t), 0.5 * (ttft + new_ttft), 0.5 * (ttft_p95 + new_p95)
    cycle = ttft + n * t + D
    util = 1.0 if saturated else utilisation(N, ttft + n * t, cycle)
    return Prediction(concurrency=N, saturated=saturated, decoding=decoding, step_s=t, cycle_s=cycle,
                      ttft_p95_s=ttft_p95, ttft_mean_s=ttft, output_speed_p25_tps=(L - 1) / (n * t),
                      throughput_output_tps=N * L / cycle, cached_tokens=C, prefill_steps=m,
                      utilisation=util, power_w=p.power_w(util))


def utilisation(concurrency: int, in_engine_s: float, cycle_s: float) -> float:
    """Fraction of the time the replica runs a step, for ``concurrency`` agents that each spend
    ``in_engine_s`` of every ``cycle_s`` in the engine (prefill and decode; the rest is tool delay).

    The mean-value model's occupancy, capped at 1: ``min(1, N in_engine / cycle)``, the mean
    number of requests in the engine. Exact for one agent and when the agents' engine times do not
    overlap; an upper bound otherwise (overlapping requests share steps).
    """
    if cycle_s <= 0:
        return 1.0
    return min(1.0, concurrency * in_engine_s / cycle_s)


def predict_null(ttft_s: float, itl_s: float, *, output_tokens: int, tokens_per_chunk: int = 1) -> tuple[float, float]:
    """(P25 output speed in tokens/s, P95 TTFT in s) of the null model: the same at every concurrency."""
    events = math.ceil(output_tokens / tokens_per_chunk)
    span = (events - 1) * itl_s
    return ((output_tokens - 1) / span if span > 0 else math.inf), ttft_s


def max_concurrency(tier: Tier, params: BatchingParams, workload: WorkloadShape, *, limit: int = 100_000) -> int:
    """The largest N such that every concurrency 1..N meets ``tier`` (a :class:`~agentperf_native.tiers.Tier`)
    by :func:`predict` (0: none).

    Returns ``limit`` when even ``limit`` agents meet it.
    """
    def ok(n: int) -> bool:
        pr = predict(n, params, workload)
        return tier.passes(pr.output_speed_p25_tps, pr.ttft_p95_s)

    best = 0
    for n in range(1, limit + 1):
        if not ok(n):
            return best
        best = n
    return best


@dataclass(frozen=True)
class Simulated:
    """What :func:`simulate` measured over the requests that arrived after the warm-up."""

    requests: int
    ttft_p50_s: float
    ttft_p95_s: float
    output_speed_p25_tps: float
    output_speed_p50_tps: float
    cached_tokens_mean: float
    utilisation: float = 0.0  #: fraction of the measured window the model spent running steps


def simulate(concurrency: int, params: BatchingParams, workload: WorkloadShape, *, duration_s: float = 60.0,
             warmup_s: float | None = None, spawn_interval_s: float | None = None,
             client_delay_s: float = 0.0003) -> Simulated:
    """Runs the native batching model in virtual time against ``concurrency`` closed-loop agents.

    The oracle for :func:`predict`: the same C++ model the server runs, without sockets or clocks.
    Each agent repeats the workload's request with its own prompt blocks (so its prompt is cached
    after its first request, as with per-agent isolation), sends the next one ``client_delay_s``
    plus the tool delay after the previous one ends, and the agents start ``spawn_interval_s``
    apart (default: spread over one slot turnover, as a ramp does).
    """
    import heapq

    import numpy as np

    from .. import _core

    pr = predict(concurrency, params, workload)
    if spawn_interval_s is None:
        turnover = pr.cycle_s if not pr.saturated else (pr.prefill_steps + math.ceil(
            (workload.output_tokens - 1) / params.tokens_per_chunk)) * pr.step_s
        spawn_interval_s = turnover / min(concurrency, batch_limit(params, workload))
    if warmup_s is None:
        warmup_s = concurrency * spawn_interval_s + 2 * pr.cycle_s
    model = _core.SimModel("batching", params.tokens_per_chunk, params=params.core_params())
    P, L = workload.prompt_tokens, workload.output_tokens
    nblocks = P // params.block_tokens
    blocks = [[(a << 32) + i + 1 for i in range(nblocks)] for a in range(concurrency)]
    if workload.cached_tokens is not None:  # a fixed hit count: share exactly that many blocks' worth
        nshared = workload.cached_tokens // params.block_tokens
        blocks = [[(a << 32) + i + 1 for i in range(nshared)] for a in range(concurrency)]
    arrivals = [(round(a * spawn_interval_s * 1e9), a) for a in range(concurrency)]
    heapq.heapify(arrivals)
    sent: dict[int, int] = {}
    first: dict[int, tuple[int, int]] = {}
    rows = []
    end_ns, delay_ns = round((warmup_s + duration_s) * 1e9), round((client_delay_s + workload.tool_delay_s) * 1e9)
    warm_ns = round(warmup_s * 1e9)
    busy_warm = None

    def busy_at(x: int) -> int:  # the model's busy time up to x (its state holds until the next event)
        st = model.stats()
        since = st["busy_since_ns"]
        return st["busy_ns"] + (min(x, st["busy_until_ns"]) - since if 0 <= since < x else 0)

    while True:
        d = model.next_deadline_ns
        t = min(x for x in (d if d >= 0 else None, arrivals[0][0] if arrivals else None) if x is not None)
        if busy_warm is None and t >= warm_ns:
            busy_warm = busy_at(warm_ns)
        if t > end_ns:
            break
        if arrivals and arrivals[0][0] == t:
            _, a = heapq.heappop(arrivals)
            model.submit(P, L, t, blocks[a], a)
            sent[a] = t
            continue
        for cookie, _, _, cached, at, is_first, last in model.advance(t):
            if is_first:
                first[cookie] = (at, cached)
            if last:
                rows.append((sent[cookie], first[cookie][0], at, first[cookie][1]))
                heapq.heappush(arrivals, (at + delay_ns, cookie))
    r = np.array(rows, dtype=np.float64).reshape(-1, 4)
    r = r[r[:, 0] >= warmup_s * 1e9]
    ttft = (r[:, 1] - r[:, 0]) / 1e9
    speed = (L - 1) / ((r[:, 2] - r[:, 1]) / 1e9)
    return Simulated(requests=len(r), ttft_p50_s=float(np.percentile(ttft, 50)),
                     ttft_p95_s=float(np.percentile(ttft, 95)),
                     output_speed_p25_tps=float(np.percentile(speed, 25)),
                     output_speed_p50_tps=float(np.percentile(speed, 50)), cached_tokens_mean=float(r[:, 3].mean()),
                     utilisation=(busy_at(end_ns) - (busy_warm or 0)) / (end_ns - warm_ns))
