"""What a running replay says about itself: durations in words, what it waits for when idle
(and which option shortens that wait), its end estimate, and a plan's long stretches."""

from __future__ import annotations

import pytest

from tracetap.replay.plan import plan_from_rows
from tracetap.replay.watch import Idle, Watch, human_seconds, idle_stretches

from .traces import session_rows


@pytest.mark.parametrize(
    ("seconds", "words"),
    [
        (0, "0 s"),
        (45.4, "45 s"),
        (60, "1 min"),
        (185, "3 min 5 s"),
        (11_520, "3 h 12 min"),
        (7200, "2 h"),
        (31 * 86400 + 4 * 3600 + 59, "31 d 4 h"),
    ],
)
def test_human_seconds(seconds: float, words: str) -> None:
    assert human_seconds(seconds) == words


def test_idle_names_the_option_that_shortens_the_wait() -> None:
    assert Idle(11.52, 11_520, "session").explain() == (
        "next session starts in 3 h 12 min of trace time; use --max-idle to cap idle gaps"
    )
    assert Idle(1.0, 600, "gap").explain() == (
        "next round in 10 min of trace time; use --max-wait to cap waits within a session"
    )
    assert "--speedup" in Idle(1.0, 600, "gap", open_loop=True).explain()


def _plan():  # type: ignore[no-untyped-def]
    # a: two rounds, 10 s apart; b starts 3 h 12 min after a's first round
    rows = session_rows("a", 0.0, [(0, 10, 2), (12, 5, 2)], gap=9.5)
    return plan_from_rows(rows + session_rows("b", 11_520.0, [(0, 10, 2)]))


def test_status_says_what_it_waits_for_and_when_it_ends() -> None:
    plan = _plan()
    waits = [[10.0, 0.0], [0.0]]  # as the closed loop waits after each round (wall s)
    watch = Watch(plan, speedup=2.0, wait_after=waits)
    watch.start(100.0, {"a": 0.0, "b": 5760.0})
    first = watch.status(99.0)
    assert first.idle is not None and first.idle.kind == "session" and first.eta_s is None
    watch.scheduled("a", 0, 100.0)
    watch.sent("a")
    assert watch.status(100.5).idle is None and watch.status(100.5).in_flight == 1
    watch.finished("a", 1000.0, error=False)  # 1 s response
    watch.scheduled("a", 1, 111.0)
    st = watch.status(101.0)
    assert st.idle is not None and st.idle.kind == "gap" and st.idle.wall_s == pytest.approx(10)
    assert st.idle.trace_s == pytest.approx(20)  # wall x --speedup
    # b: due at 5860, then one round of the mean response time (1 s)
    assert st.eta_s == pytest.approx(5860 + 1 - 101)
    watch.sent("a")
    watch.finished("a", 1000.0, error=True)
    st = watch.status(112.0)
    assert st.done == 2 and st.errors == 1
    assert st.idle is not None and st.idle.kind == "session"
    assert st.idle.explain().startswith("next session starts in 3 h 11 min of trace time")


def test_idle_stretches_of_a_plan() -> None:
    idle, wait = idle_stretches(_plan())
    # a's last round starts at 10 s; b at 11,520 s. a waits 9.5 s after its first round.
    assert idle == pytest.approx(11_510) and wait == pytest.approx(9.5)
