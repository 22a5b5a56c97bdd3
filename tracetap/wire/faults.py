"""Why a round's record is not whole, as the wire layer names it.

`Exchange.error` carries one reason. The proxy puts a transport error there (mitmproxy's
message) or `REQUEST_OVER_CAP`; ingest adds a request body it cannot decode ("request body:
..."), framing a response cut at the cap or undecodable ("truncated: ...", "response body:
..."). A record fault (`is_record_fault`) means content is missing from the record itself, so
the round is never complete and the fault is its `error_type`; a transport error only counts
when the stream had not reached its final event (tracetap.wire.adapters.base.finish).
"""

from __future__ import annotations

__all__ = [
    "ENDED_EARLY",
    "REQUEST_OVER_CAP",
    "RESPONSE_OVER_CAP",
    "is_record_fault",
    "is_request_fault",
]

# The proxy kept a prefix of the body, up to its cap (tracetap.proxy.capture writes the
# request's as a literal; tests/proxy/test_honest_flags.py checks that they agree).
REQUEST_OVER_CAP = "truncated: request over max_body"
RESPONSE_OVER_CAP = "truncated: response over max_body"
# An event stream that ended, without a transport error, before its terminal event.
ENDED_EARLY = "stream ended before its final event"

_RECORD_FAULTS = ("truncated: ", "request body: ", "response body: ")
_REQUEST_FAULTS = (REQUEST_OVER_CAP, "request body: ")


def is_record_fault(error: str | None) -> bool:
    """Whether `error` (an `Exchange.error`) says content is missing from the record."""
    return error is not None and error.startswith(_RECORD_FAULTS)


def is_request_fault(error: str | None) -> bool:
    """Whether `error` says the request body in the record is not what was sent (a prefix, or
    bytes that could not be decoded)."""
    return error is not None and error.startswith(_REQUEST_FAULTS)
