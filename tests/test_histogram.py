"""The native log-linear histogram seen from Python: percentiles against numpy's exact order
statistics, exactness below 2**sub_bucket_bits, merging, and multi-threaded fills (record_array
releases the GIL)."""

import threading

import numpy as np
import pytest

from agentperf_native import _core

PS = [1, 5, 25, 50, 75, 90, 95, 99, 99.9]
MAX_VALUE = 2**62


def exact_percentiles(values, ps):
    # "inverted_cdf" is the order-statistic ("lower") rule the histogram documents.
    return np.percentile(values, ps, method="inverted_cdf")


def fill(values, sub_bucket_bits=8):
    h = _core.HistogramSnapshot(sub_bucket_bits)
    h.record_array(values)
    return h


def assert_percentiles_close(h, values, ps=PS):
    got = h.percentiles(ps)
    assert got.dtype == np.float64 and got.shape == (len(ps),)
    want = exact_percentiles(values, ps).astype(np.float64)
    tol = h.relative_error() * want
    bad = np.abs(got - want) > tol
    assert not bad.any(), f"p={np.asarray(ps)[bad]} got={got[bad]} want={want[bad]}"
    for p, g in zip(ps, got):
        assert h.percentile(p) == g


@pytest.mark.parametrize("sub_bucket_bits", [3, 8, 12])
@pytest.mark.parametrize("sigma", [0.3, 1.0, 2.5])
def test_percentiles_lognormal_ns(sub_bucket_bits, sigma):
    rng = np.random.default_rng(1000 + sub_bucket_bits * 10 + int(sigma * 10))
    # Latencies in nanoseconds around 50 ms.
    values = (rng.lognormal(mean=np.log(5e7), sigma=sigma, size=200_000) + 1).astype(np.int64)
    h = fill(values, sub_bucket_bits)
    assert h.count == values.size
    assert h.min == values.min()
    assert h.max == values.max()
    assert h.mean == pytest.approx(values.astype(np.float64).mean(), rel=1e-12)
    assert h.clamped == 0
    assert_percentiles_close(h, values)


def test_percentiles_speeds():
    rng = np.random.default_rng(7)
    # Per-request output speeds in milli-tokens per second: a slow and a fast population.
    slow = rng.normal(15_000, 3_000, size=30_000)
    fast = rng.gamma(shape=9.0, scale=12_000, size=70_000)
    values = np.maximum(np.concatenate([slow, fast]), 1).astype(np.uint64)
    rng.shuffle(values)
    h = fill(values)
    assert h.count == values.size
    assert (h.min, h.max) == (values.min(), values.max())
    assert_percentiles_close(h, values)
    # Many more percentiles, as a numpy array.
    assert_percentiles_close(h, values, np.linspace(0, 100, 1001))


@pytest.mark.parametrize("sub_bucket_bits", [1, 4, 8, 10])
def test_small_integers_are_exact(sub_bucket_bits):
    rng = np.random.default_rng(sub_bucket_bits)
    for n in (1, 2, 3, 10, 999, 20_000):
        values = rng.integers(0, 2**sub_bucket_bits, size=n, dtype=np.uint64)
        h = fill(values, sub_bucket_bits)
        ps = np.concatenate([PS, np.linspace(0, 100, 201)])
        np.testing.assert_array_equal(h.percentiles(ps), exact_percentiles(values, ps))


def test_constant_and_empty():
    for c in (0, 1, 255, 256, 123_456_789, MAX_VALUE):
        h = _core.HistogramSnapshot()
        h.record(c, 1000)
        assert list(h.percentiles(PS)) == [float(c)] * len(PS)
        assert (h.count, h.min, h.max, h.mean) == (1000, c, c, float(c))
    e = _core.HistogramSnapshot()
    assert (e.count, e.min, e.max, e.mean, e.clamped) == (0, 0, 0, 0.0, 0)
    assert e.percentile(50) == 0
    assert e.relative_error() == 1 / 128


def test_clamping_and_bad_input():
    h = _core.HistogramSnapshot()
    h.record(2**64 - 1)
    h.record(2**80)
    h.record_array(np.array([MAX_VALUE, MAX_VALUE + 1], dtype=np.uint64))
    assert (h.count, h.clamped, h.max) == (4, 3, MAX_VALUE)
    assert h.counts()[-1] == 4
    with pytest.raises(ValueError):
        h.record(-1)
    with pytest.raises(ValueError):
        h.record_array(np.array([3, -1], dtype=np.int64))
    with pytest.raises(TypeError):
        h.record_array(np.array([1.5]))
    with pytest.raises(ValueError):
        h.percentile(100.01)
    with pytest.raises(IndexError):
        h.bucket_lower(len(h.counts()))
    assert h.count == 4  # the refused arrays recorded nothing


def test_merge_mismatched_bits_raises():
    a, b = _core.HistogramSnapshot(8), _core.HistogramSnapshot(9)
    with pytest.raises(ValueError):
        a.merge(b)
    c = _core.HistogramSnapshot(8)
    a.record(5)
    c.record(9, 2)
    a.merge(c)
    assert (a.count, a.min, a.max) == (3, 5, 9)


def test_bucket_layout():
    h = _core.HistogramSnapshot(8)
    counts = h.counts()
    assert counts.dtype == np.uint64 and len(counts) == (64 - 8) * 128 + 1
    lowers = np.array([h.bucket_lower(i) for i in range(len(counts))], dtype=np.uint64)
    uppers = np.array([h.bucket_upper(i) for i in range(len(counts))], dtype=np.uint64)
    assert lowers[0] == 0 and uppers[-1] == MAX_VALUE
    np.testing.assert_array_equal(lowers[1:], uppers[:-1] + 1)
    np.testing.assert_array_equal(lowers[:256], np.arange(256))
    for i in range(0, len(counts), 37):
        assert h.bucket_index(int(lowers[i])) == i and h.bucket_index(int(uppers[i])) == i


def test_two_thread_fill_equals_serial_fill():
    rng = np.random.default_rng(42)
    values = (rng.lognormal(np.log(2e6), 2.0, size=2_000_000)).astype(np.uint64)
    values[::5000] = MAX_VALUE - np.arange(values[::5000].size, dtype=np.uint64)  # sum carries
    halves = [values[0::2], values[1::2]]
    live = [_core.Histogram(), _core.Histogram()]

    def worker(k):
        # Many chunks, so that the two threads interleave while the GIL is released.
        for chunk in np.array_split(halves[k], 50):
            live[k].record_array(chunk)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    merged = live[0].snapshot()
    merged.merge(live[1].snapshot())

    serial = fill(values)
    assert merged == serial
    assert merged.count == serial.count == values.size
    assert (merged.min, merged.max) == (serial.min, serial.max) == (values.min(), values.max())
    assert merged.mean == serial.mean
    np.testing.assert_array_equal(merged.counts(), serial.counts())
    np.testing.assert_array_equal(merged.percentiles(PS), serial.percentiles(PS))
    assert_percentiles_close(merged, values)


def test_snapshots_while_recording_never_go_backwards():
    rng = np.random.default_rng(3)
    values = rng.integers(1, 10**9, size=3_000_000, dtype=np.uint64)
    live = _core.Histogram()
    done = threading.Event()

    def writer():
        for chunk in np.array_split(values, 30):
            live.record_array(chunk)
        done.set()

    t = threading.Thread(target=writer)
    t.start()
    last_count, last_counts = 0, live.snapshot().counts()
    while True:
        finished = done.is_set()
        s = live.snapshot()
        counts = s.counts()
        assert s.count >= last_count
        assert (counts >= last_counts).all()
        assert int(counts.sum()) == s.count
        last_count, last_counts = s.count, counts
        if finished:
            break
    t.join()
    assert last_count == values.size
    assert live.snapshot() == fill(values)
    live.reset()
    assert live.snapshot() == _core.HistogramSnapshot()
