"""What a running replay is doing, for its progress line: rounds done, in flight, when it ends
(estimated), and, when nothing is in flight, what it waits for and how far off that is.

`Watch` is told by the runner when a round is scheduled, sent and done; `status()` reads it.
`idle_stretches` finds a plan's long waits before it runs, so the command can warn up front.
"""

from __future__ import annotations

from dataclasses import dataclass

from tracetap.replay.plan import Plan

__all__ = ["Idle", "Status", "Watch", "human_seconds", "idle_stretches"]


def human_seconds(seconds: float) -> str:
    """A duration in the largest two units: "45 s", "3 min 5 s", "3 h 12 min", "31 d 4 h".

    Example: human_seconds(11_520) -> "3 h 12 min"
    """
    s = max(0, round(seconds))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60} s" if s % 60 else f"{s // 60} min"
    if s < 86400:
        h, m = divmod(s // 60, 60)
        return f"{h} h {m} min" if m else f"{h} h"
    d, h = divmod(s // 3600, 24)
    return f"{d} d {h} h" if h else f"{d} d"


@dataclass(frozen=True, slots=True)
class Idle:
    """Nothing in flight: the next send is `wall_s` away, `trace_s` of the recording's time
    (wall × --speedup); `kind` is "session" (a session yet to start: --max-idle shortens such
    stretches) or "gap" (a session's recorded wait after a round: --max-wait caps it in the
    closed loop; the open loop keeps recorded times, --speedup shortens them)."""

    wall_s: float
    trace_s: float
    kind: str
    open_loop: bool = False

    def explain(self) -> str:
        """The line the progress display shows while it waits.

        Example: "next round in 3 h 12 min of trace time; use --max-wait to cap waits ..."
        """
        what = "next session starts" if self.kind == "session" else "next round"
        if self.kind == "session":
            cap = "use --max-idle to cap idle gaps"
        elif self.open_loop:
            cap = "the open loop keeps recorded times: use --speedup to shorten them"
        else:
            cap = "use --max-wait to cap waits within a session"
        return f"{what} in {human_seconds(self.trace_s)} of trace time; {cap}"


@dataclass(frozen=True, slots=True)
class Status:
    """A running replay at one moment; `eta_s` (wall seconds to the end) is None until a
    response time is known."""

    done: int
    planned: int
    in_flight: int
    errors: int
    eta_s: float | None
    idle: Idle | None


class Watch:
    """Follows a replay's sessions: for each, its next round and that round's deadline (on the
    monotonic clock) or that it is in flight. The end estimate adds, per session, its remaining
    recorded waits (scaled as the replay scales them) and the mean response time per round."""

    def __init__(
        self, plan: Plan, speedup: float, wait_after: list[list[float]], open_loop: bool = False
    ) -> None:
        """`wait_after[s][i]`: the wall wait after round i of session s, as the closed loop
        waits; the open loop sends each round at its recorded time instead."""
        self.planned = plan.n_rounds
        self.speedup = speedup
        self.open_loop = open_loop
        self._last_at = max((r.at for s in plan.sessions for r in s.rounds), default=0.0)
        self._t0: float | None = None
        self._index = {s.session_id: i for i, s in enumerate(plan.sessions)}
        # remaining[s][i]: the waits after rounds i.. of session s (the last one waits for none)
        self._remaining = []
        for waits in wait_after:
            tail, acc = [0.0] * (len(waits) + 1), 0.0
            for i in range(len(waits) - 1, -1, -1):
                acc += waits[i] if i < len(waits) - 1 else 0.0
                tail[i] = acc
            self._remaining.append(tail)
        self._rounds = [len(s.rounds) for s in plan.sessions]
        self._next = [0] * len(plan.sessions)
        self._deadline: dict[int, tuple[float, str]] = {}
        self._flying: dict[int, int] = {}  # session -> rounds in flight (open loop: several)
        self.done = 0
        self.errors = 0
        self._e2e_total = 0.0
        self._starts: dict[int, float] = {}

    def start(self, t0: float, starts: dict[str, float]) -> None:
        """The replay's clock starts at `t0`: each session's first round is due then plus its
        offset `starts[session_id]` (wall seconds)."""
        self._t0 = t0
        for sid, offset in starts.items():
            self._deadline[self._index[sid]] = (t0 + offset, "session")

    def scheduled(self, session_id: str, index: int, deadline: float) -> None:
        """The session's round at position `index` is due at `deadline`."""
        s = self._index[session_id]
        self._next[s] = index
        kind = "session" if index == 0 else "gap"
        self._deadline[s] = (deadline, kind)

    def sent(self, session_id: str) -> None:
        s = self._index[session_id]
        self._deadline.pop(s, None)
        self._flying[s] = self._flying.get(s, 0) + 1

    def finished(self, session_id: str, e2e_ms: float | None, error: bool) -> None:
        """A round of the session has its response (or failed)."""
        s = self._index[session_id]
        left = self._flying.get(s, 0) - 1
        if left > 0:
            self._flying[s] = left
        else:
            self._flying.pop(s, None)
        self._next[s] += 1
        self.done += 1
        self.errors += error
        self._e2e_total += (e2e_ms or 0.0) / 1000.0

    def status(self, now: float) -> Status:
        """Where the replay stands at `now` (the monotonic clock)."""
        mean = self._e2e_total / self.done if self.done else None
        eta = None
        if mean is not None and self.open_loop and self._t0 is not None:
            left = self.planned - self.done
            eta = max(self._t0 + self._last_at / self.speedup, now) + mean - now if left else 0.0
        elif mean is not None:
            ends = [now]
            for s, n in enumerate(self._rounds):
                left = n - self._next[s]
                if left <= 0:
                    continue
                due = self._deadline.get(s, (now, ""))[0]
                ends.append(max(due, now) + left * mean + self._remaining[s][self._next[s]])
            eta = max(ends) - now
        idle = None
        if not self._flying and self._deadline:
            due, kind = min(self._deadline.values())
            if due > now:
                idle = Idle(due - now, (due - now) * self.speedup, kind, self.open_loop)
        flying = sum(self._flying.values())
        return Status(self.done, self.planned, flying, self.errors, eta, idle)


def idle_stretches(plan: Plan) -> tuple[float, float]:
    """The longest stretch in `plan` with no session under way (what --max-idle shortens) and
    the longest recorded wait inside a session (what --max-wait caps), in trace seconds.

    Example: idle_stretches(load_plan("trace.jsonl")) -> (11520.0, 300.0)
    """
    longest_idle, busy_until = 0.0, None
    for session in sorted(plan.sessions, key=lambda s: s.start):
        if not session.rounds:
            continue
        if busy_until is not None:
            longest_idle = max(longest_idle, session.start - busy_until)
        end = max(r.at for r in session.rounds)
        busy_until = end if busy_until is None else max(busy_until, end)
    longest_wait = max(
        (r.tool_wait + r.human_wait for s in plan.sessions for r in s.rounds[:-1]), default=0.0
    )
    return longest_idle, longest_wait
