"""SSE framing: every way a stream can be split or terminated yields the same events."""

from __future__ import annotations

import random
import re
from itertools import accumulate

import pytest

from tracetap.wire.sse import SSEParser, frame_whole

STREAM = (
    b'event: message_start\r\ndata: {"a":1}\r\n\r\n'
    b": keep-alive comment\n\n"
    b"data: first line\ndata: second line\n\n"
    b"id: 7\nretry: 100\nevent: ping\ndata:\n\n"
    b'event: done\rdata: {"b":"\xc3\xa9"}\r\r'
)
EXPECTED = [
    ("message_start", '{"a":1}'),
    ("message", "first line\nsecond line"),
    ("ping", ""),
    ("done", '{"b":"\u00e9"}'),
]


def _run(chunks: list[bytes]) -> list[tuple[str, str]]:
    parser = SSEParser()
    events: list[tuple[str, str]] = []
    for chunk in chunks:
        events += parser.feed(chunk)
    return events + parser.flush()


def test_whole_stream() -> None:
    assert _run([STREAM]) == EXPECTED


def test_byte_by_byte() -> None:
    assert _run([STREAM[i : i + 1] for i in range(len(STREAM))]) == EXPECTED


@pytest.mark.parametrize("seed", range(20))
def test_random_splits(seed: int) -> None:
    rng = random.Random(seed)
    cuts = sorted(rng.sample(range(1, len(STREAM)), 12))
    chunks = [STREAM[a:b] for a, b in zip([0, *cuts], [*cuts, len(STREAM)])]
    assert _run(chunks) == EXPECTED


def test_truncated_stream_flushes_last_event() -> None:
    assert _run([b'event: x\ndata: {"partial":']) == [("x", '{"partial":')]


def test_events_are_returned_as_soon_as_complete() -> None:
    parser = SSEParser()
    assert parser.feed(b"event: a\ndata: 1\n") == []
    assert parser.feed(b"\n") == [("a", "1")]


def _reference(stream: bytes) -> list[tuple[str, str]]:
    """The spec applied to the whole stream at once, line by line."""
    events, event, data = [], None, []
    for raw in re.split(rb"\r\n|\r|\n", stream) + [b""]:
        line = raw.decode("utf-8", "replace")
        if not line:
            if data or event is not None:
                events.append((event or "message", "\n".join(data)))
            event, data = None, []
        elif not line.startswith(":"):
            name, sep, value = line.partition(":")
            value = value[1:] if sep and value.startswith(" ") else value
            if name == "data":
                data.append(value)
            elif name == "event":
                event = value
    return events


@pytest.mark.parametrize("seed", range(40))
def test_lf_streams_split_anywhere_frame_as_the_spec_says(seed: int) -> None:
    """Streams whose lines end in LF alone (as the model APIs send them) are framed a chunk's
    complete lines at once: the same events, whatever the splits, with UTF-8 sequences split
    across chunks, invalid bytes, comments, several data lines and fields without a colon."""
    rng = random.Random(seed)
    pieces = [
        b'event: content_block_delta\ndata: {"text":"\xc3\xa9t\xc3\xa9 \xe2\x9c\x93"}\n\n',
        b": ping\n\n",
        b"data: a\ndata:b\ndata\n\n",
        b"event: x\n\n",
        b"event\n\n",
        b"data: \xff\xfe broken \xe2\x82\n\n",
        b"id: 3\nretry: 9\ndata: {}\n\n",
        b"data:  two spaces\n\n",
        b"\n\n",
        b"event: last\ndata: no blank line",
    ]
    stream = b"".join(rng.choice(pieces) for _ in range(30))
    cuts = sorted(rng.sample(range(1, len(stream)), 25))
    chunks = [stream[a:b] for a, b in zip([0, *cuts], [*cuts, len(stream)])]
    assert _run(chunks) == _reference(stream) == _run([stream])


def _chunk_by_chunk(chunks: list[tuple[float, bytes]]) -> list[tuple[float, str, str]]:
    parser, out = SSEParser(), []
    for at, chunk in chunks:
        out += [(at, name, data) for name, data in parser.feed(chunk)]
    return out + [(chunks[-1][0], name, data) for name, data in parser.flush()]


@pytest.mark.parametrize("seed", range(40))
def test_a_whole_stream_frames_as_chunk_by_chunk_with_the_same_times(seed: int) -> None:
    """frame_whole gives every event, with the arrival of the chunk that completed it, as
    feeding the chunks one by one does; with a CR in the stream it leaves it to the parser."""
    rng = random.Random(seed)
    pieces = [
        b'event: content_block_delta\ndata: {"text":"\xc3\xa9t\xc3\xa9 \xe2\x9c\x93"}\n\n',
        b": ping\n\n",
        b"data: a\ndata:b\ndata\n\n",
        b"event: x\n\n",
        b"event\n\n",
        b"data: \xff\xfe broken \xe2\x82\n\n",
        b"id: 3\ndata: {}\n\n",
        b"\n",
        b"event: last\ndata: no blank line",
        b"data: 1\n",
    ]
    stream = b"".join(rng.choice(pieces) for _ in range(30))
    cuts = sorted(rng.sample(range(1, len(stream)), 25))
    chunks = [
        (float(i), stream[a:b]) for i, (a, b) in enumerate(zip([0, *cuts], [*cuts, len(stream)]))
    ]
    assert frame_whole(chunks) == _chunk_by_chunk(chunks)
    assert [(n, d) for _, n, d in frame_whole(chunks)] == _reference(stream)
    assert frame_whole([(0.0, b"data: 1\r\n\r\n")]) is None


@pytest.mark.parametrize("seed", range(40))
def test_a_stream_in_the_apis_form_frames_as_chunk_by_chunk(seed: int) -> None:
    """A stream in the form the APIs send (an optional event line, one data line, a blank
    line) takes frame_whole's regex path: the same events and times as the parser gives, with
    chunks holding several events, events split anywhere (between an event's two LFs too),
    empty names and data, and invalid UTF-8."""
    rng = random.Random(seed)
    pieces = [
        b'event: content_block_delta\ndata: {"text":"\xc3\xa9t\xc3\xa9 \xe2\x9c\x93"}\n\n',
        b'data: {"choices":[]}\n\n',
        b"event: \ndata: \n\n",
        b"data: \n\n",
        b"event: a:b\ndata:  two: spaces\n\n",
        b"data: \xff\xfe broken \xe2\x82\n\n",
        b"event: ping\ndata: {}\n\n",
    ]
    events = [rng.choice(pieces) for _ in range(30)]
    stream = b"".join(events)
    if seed % 2:  # chunks end where events do, as the APIs flush them
        bounds = list(accumulate(len(e) for e in events))
        cuts = sorted(rng.sample(bounds[:-1], 12))
    else:
        cuts = sorted(rng.sample(range(1, len(stream)), 25))
    chunks = [
        (float(i), stream[a:b]) for i, (a, b) in enumerate(zip([0, *cuts], [*cuts, len(stream)]))
    ]
    assert frame_whole(chunks) == _chunk_by_chunk(chunks)
    assert [(n, d) for _, n, d in frame_whole(chunks)] == _reference(stream)
    one_each = [(float(i), e) for i, e in enumerate(events)]  # an event a chunk
    assert frame_whole(one_each) == _chunk_by_chunk(one_each)
    split = stream.index(b"\n\n") + 1  # a boundary between an event's two LFs
    halves = [(0.0, stream[:split]), (1.0, stream[split:])]
    assert frame_whole(halves) == _chunk_by_chunk(halves)
    assert frame_whole(halves)[0][0] == 1.0


@pytest.mark.parametrize(
    "odd",
    [
        b"data: x\ndata: y\n\n",
        b": ping\ndata: z\n\n",
        b"id: 1\ndata: z\n\n",
        b"event: a\nevent: b\ndata: z\n\n",
        b"data: z\nevent: late\n\n",
        b"data:z\n\n",
    ],
)
def test_one_event_off_the_apis_form_frames_by_the_spec(odd: bytes) -> None:
    """An event a chunk, one of them not in the APIs' form (two data lines, a comment, an id,
    two names, a name after the data, no space): framed by the spec, not by the regex."""
    chunks = [(0.0, b"event: a\ndata: 1\n\n"), (1.0, odd), (2.0, b"data: 2\n\n")]
    assert frame_whole(chunks) == _chunk_by_chunk(chunks)
    assert [(n, d) for _, n, d in frame_whole(chunks)] == _reference(b"".join(c for _, c in chunks))
