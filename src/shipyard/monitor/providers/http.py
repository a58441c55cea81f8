"""The http provider: GET a JSON document and read one number from it by a path like ``a.b[0].c``.

Anything wrong on the other side (unreachable, an error status, not JSON, no such path, not a
number, no whole answer within the metric's timeout) is a measurement without a value and with
the reason: inconclusive, never a crash. The URL shown in reasons drops credentials and the
query string, which may carry tokens.
"""

from __future__ import annotations

import json
import math
import re
import urllib.parse

from shipyard.monitor.providers import fetch
from shipyard.monitor.providers.fetch import shown_url
from shipyard.monitor.providers.interface import (
    Measurement,
    MetricProvider,
    MetricQuery,
    MetricQueryError,
    substitute,
)

MAX_BODY_BYTES = 1024 * 1024
"""The largest answer the http provider reads (1 MiB); a larger one is no data."""

_REASON_CHARS = 200
_STEP = re.compile(r"\.?([^.\[\]]+)|\[(\d+)\]")


def parse_path(path: str, metric: str) -> tuple[str | int, ...]:
    """The steps of a path like ``a.b[0].c`` (``$`` alone is the whole document)."""
    text = path.strip()
    if text == "$":
        return ()
    if text.startswith("$"):
        text = text[1:]
    steps: list[str | int] = []
    position = 0
    while position < len(text):
        match = _STEP.match(text, position)
        if match is None or (match.group(1) is not None and position and text[position] != "."):
            raise MetricQueryError(
                f"metric {metric!r}: path {path!r} is malformed at character {position + 1}",
                hint="a path is keys and indexes like data.result[0].value",
            )
        key, index = match.group(1), match.group(2)
        steps.append(int(index) if index is not None else key)
        position = match.end()
    if not steps:
        raise MetricQueryError(
            f"metric {metric!r}: path {path!r} is empty",
            hint="a path is keys and indexes like data.result[0].value",
        )
    return tuple(steps)


class HttpProvider(MetricProvider):
    """Reads a metric from a JSON document served over HTTP(S)."""

    name = "http"

    def measure(self, query: MetricQuery) -> Measurement:
        """GET the metric's ``url`` and read the number at its ``path``, or none and why."""
        url = substitute(
            query.field_value("url", self.name),
            query,
            quote=lambda value: urllib.parse.quote(value, safe=""),
        )
        steps = parse_path(query.field_value("path", self.name), query.metric)
        mistake = fetch.url_mistake(url)
        if mistake is not None:
            raise MetricQueryError(
                f"metric {query.metric!r}: url {shown_url(url)!r} {mistake}",
                hint="the http provider GETs a URL like https://HOST:PORT/PATH",
            )
        source = f"http GET {shown_url(url)} at {query.fields['path']}"
        try:
            answer = fetch.get(url, seconds=query.timeout_seconds, max_bytes=MAX_BODY_BYTES)
        except fetch.NoAnswerInTime as error:
            return Measurement.no_data(str(error), source)
        except fetch.CannotConnect as error:
            return Measurement.no_data(f"cannot reach the server: {error}", source)
        except fetch.BrokenAnswer as error:
            return Measurement.no_data(f"the request failed: {error}", source)
        if not answer.succeeded:
            return Measurement.no_data(
                f"the server answered {answer.status} {answer.phrase}", source
            )
        if answer.cut:
            return Measurement.no_data("the answer is larger than 1 MiB", source)
        try:
            document = json.loads(answer.body)
        except ValueError:
            printed = answer.body[:_REASON_CHARS].decode("utf-8", "replace")
            return Measurement.no_data(f"the answer is not JSON: {printed!r}", source)
        return _number_at(document, steps, source)


def _number_at(document: object, steps: tuple[str | int, ...], source: str) -> Measurement:
    value = document
    walked = "$"
    for step in steps:
        if isinstance(step, int):
            if not isinstance(value, list) or step >= len(value):
                return Measurement.no_data(f"{walked} has no item [{step}]", source)
            value = value[step]
            walked += f"[{step}]"
        else:
            if not isinstance(value, dict) or step not in value:
                return Measurement.no_data(f"{walked} has no key {step!r}", source)
            value = value[step]
            walked += f".{step}"
    return _as_number(value, walked, source)


def _as_number(value: object, walked: str, source: str) -> Measurement:
    if isinstance(value, bool) or value is None:
        return Measurement.no_data(f"{walked} is {json.dumps(value)}, not a number", source)
    if isinstance(value, str):
        # Some APIs (Prometheus among them) send numbers as strings.
        try:
            number = float(value)
        except ValueError:
            return Measurement.no_data(f"{walked} is {_cut(value)!r}, not a number", source)
    elif isinstance(value, int | float):
        number = float(value)
    else:
        return Measurement.no_data(f"{walked} is a {type(value).__name__}, not a number", source)
    if not math.isfinite(number):
        return Measurement.no_data(f"{walked} is {number}, not a finite number", source)
    return Measurement.of(number, source)


def _cut(text: str) -> str:
    return text if len(text) <= _REASON_CHARS else text[: _REASON_CHARS - 1] + "…"
