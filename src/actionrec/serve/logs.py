"""What the server logs, made safe and bounded: control characters escaped, API keys hidden, a
line that repeats written once in a while."""

from __future__ import annotations

import logging
import re
from urllib.parse import unquote_plus

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def printable(text: str) -> str:
    """`text` with control characters escaped (\\r, \\n, \\x1b...): what a request sends cannot
    start a forged line in the log or drive a terminal."""
    return _CONTROL.sub(lambda match: match.group().encode("unicode_escape").decode("ascii"), text)


_QUERY_PAIR = re.compile(r"([?&])([^=&\s\"'?]+)=([^&\s]*)")


def hide_keys(text: str) -> str:
    """`text` with the value of every `api_key` query parameter hidden, however its name is
    percent-encoded (`?%61pi_key=` is accepted as the key, so it is hidden too)."""
    def mask(match: re.Match) -> str:
        if unquote_plus(match.group(2)).strip().lower() != "api_key":
            return match.group()
        return f"{match.group(1)}{match.group(2)}=[hidden]"

    return _QUERY_PAIR.sub(mask, text)


class SafeLogText(logging.Filter):
    """What a request sends, made safe to log: API keys hidden (browsers send the live route's key
    in its query string, which uvicorn logs when a WebSocket connects) and control characters
    escaped (a path of `%0D%0A...` would otherwise write a forged line). On the loggers that write
    request text: a filter on a parent logger does not see its children's records."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = hide_keys(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(printable(hide_keys(arg)) if isinstance(arg, str) else arg for arg in record.args)
        return True


class Throttle(logging.Filter):
    """At most one record of a kind (logger and message) every `interval_s`; the next one let
    through says how many were held back. One condition (accept() failing for want of descriptors,
    a flood of malformed requests) cannot fill the disk with log lines."""

    def __init__(self, interval_s: float = 10.0) -> None:
        super().__init__()
        self.interval_s = interval_s
        self.seen: dict[tuple[str, str], tuple[float, int]] = {}  # kind -> (last let through, held back since)

    def filter(self, record: logging.LogRecord) -> bool:
        kind = (record.name, str(record.msg)[:200])
        last, held = self.seen.get(kind, (float("-inf"), 0))
        if record.created - last < self.interval_s:
            self.seen[kind] = (last, held + 1)
            return False
        if len(self.seen) > 1000:
            self.seen.clear()
        self.seen[kind] = (record.created, 0)
        if held:
            record.msg = f"{record.msg} ({held} more like this in the last {self.interval_s:g} s were not logged)"
        return True


def configure_logging() -> None:
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("actionrec").setLevel(logging.INFO)
