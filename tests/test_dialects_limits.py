"""The server's context limit, known before measuring (limits.py): which conversations overflow
and from which turn, and what skip / truncate do with them."""

import pytest

import agentperf_native as ap
from agentperf_native import limits


def conv(name, sizes):
    # turn k's prompt is sum(sizes[:k+1]) tokens by the counter below
    return ap.Conversation(id=name, turns=[ap.Turn(messages=[{"role": "user", "content": "x" * s}], output_tokens=10)
                                           for s in sizes])


def count(c, k):
    return sum(len(m["content"]) for t in c.turns[: k + 1] for m in t.messages)


CONVS = [conv("fits", [100, 100, 100]), conv("late", [300, 300, 300, 300]), conv("first", [2000, 10])]


def plan(action="skip", limit=1000):
    return limits.plan(CONVS, limit, "test", count, "test counter", lambda c, k: c.turns[k].output_tokens, action)


def test_plan_finds_the_first_turn_that_overflows():
    p = plan()
    need = {o["id"]: (o["first_overflow_turn"], o["tokens"]) for o in p.overflowing}
    # "late": turn 2 needs 900 + 10 + margin 16 = 926 <= 1000, turn 3 needs 1226
    assert need == {"late": (3, 1200 + 10 + limits.MARGIN_TOKENS), "first": (0, 2010 + 10 + limits.MARGIN_TOKENS)}
    assert "2 of 3 conversations need more context than the server's limit of 1000 tokens" in p.message()


def test_skip_keeps_the_conversations_that_fit_and_truncate_keeps_their_turns_that_fit():
    p = plan("skip")
    assert [c.id for c in limits.apply(CONVS, p)] == ["fits"]
    p = plan("truncate")
    kept = limits.apply(CONVS, p)
    assert [(c.id, len(c.turns)) for c in kept] == [("fits", 3), ("late", 3)]
    assert p.dropped_turns == 1 + 2 and p.kept_conversations == 2
    assert "truncated to the turns that fit (3 turns dropped)" in p.message()


def test_no_limit_or_no_overflow_changes_nothing():
    assert plan(limit=None).overflowing == [] and plan(limit=None).message() is None
    assert limits.apply(CONVS, plan(limit=100_000)) is CONVS
    with pytest.raises(ValueError, match="skip, truncate, refuse"):
        plan("drop")
