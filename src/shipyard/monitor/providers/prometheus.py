"""The ``prometheus`` metric provider: one PromQL instant query over Prometheus's HTTP API.

The metric's ``query`` has ``{{version}}`` and ``{{env}}`` filled in (escaped for a PromQL string
literal) and must come back as a single sample. Anything else — no series, several series, an
error from Prometheus, no whole answer within the metric's timeout — is a measurement without a
value and says why. Credentials in the server's URL are sent as basic auth and never shown.
"""

from __future__ import annotations

import json
import math
import urllib.parse
from collections.abc import Mapping
from typing import Any

from shipyard.monitor.providers import fetch
from shipyard.monitor.providers.fetch import shown_url
from shipyard.monitor.providers.interface import (
    Measurement,
    MetricProvider,
    MetricQuery,
    MetricQueryError,
    substitute,
)

_MAX_ANSWER_BYTES = 4 * 1024 * 1024
"""Largest answer read from Prometheus (one sample is a few hundred bytes)."""

_SERIES_NAMED = 3
"""How many of several series a reason names."""


def promql_string(value: str) -> str:
    """``value`` escaped to sit inside a PromQL string literal, whichever quote encloses it."""
    escaped = []
    for char in value:
        if char == "\\":
            escaped.append("\\\\")
        elif char in "\"'`" or ord(char) < 0x20 or ord(char) == 0x7F:
            escaped.append(f"\\x{ord(char):02x}")
        else:
            escaped.append(char)
    return "".join(escaped)


class PrometheusProvider(MetricProvider):
    """Measures a metric with a PromQL instant query against one Prometheus server."""

    name = "prometheus"

    def __init__(self, base_url: str | None = None) -> None:
        self.base_url = base_url.rstrip("/") if base_url else None

    def measure(self, query: MetricQuery) -> Measurement:
        """The single sample the metric's ``query`` returns now, or none and why."""
        promql = substitute(query.field_value("query", self.name), query, quote=promql_string)
        base = self._server(query)
        source = f"prometheus {shown_url(base)}: {promql}"
        params = {"query": promql, "timeout": f"{query.timeout_seconds:g}"}  # seconds
        url = f"{base}/api/v1/query?{urllib.parse.urlencode(params)}"
        try:
            answer = fetch.get(url, seconds=query.timeout_seconds, max_bytes=_MAX_ANSWER_BYTES)
        except fetch.NoAnswerInTime as error:
            return Measurement.no_data(str(error), source)
        except fetch.FetchError as error:
            return Measurement.no_data(f"Prometheus did not answer: {error}", source)
        if answer.cut:
            reason = f"Prometheus answered more than {_MAX_ANSWER_BYTES // (1024 * 1024)} MiB"
            return Measurement.no_data(reason, source)
        if not answer.succeeded:
            reason = _prometheus_error(answer.body) or f"HTTP {answer.status} {answer.phrase}"
            return Measurement.no_data(f"Prometheus refused the query: {reason}", source)
        return _sample(answer.body, source)

    def _server(self, query: MetricQuery) -> str:
        url = (query.fields.get("url") or "").strip().rstrip("/") or self.base_url
        if not url:
            raise MetricQueryError(
                f"metric {query.metric!r} (provider prometheus) names no Prometheus server",
                hint="set 'url: http://HOST:9090' on the metric",
            )
        mistake = fetch.url_mistake(url)
        if mistake is not None:
            raise MetricQueryError(
                f"metric {query.metric!r}: {shown_url(url)!r} is not a Prometheus URL"
                f" (it {mistake})",
                hint="write it as http://HOST:PORT (the address of Prometheus's web UI)",
            )
        return url


DEFAULT_URL = "http://127.0.0.1:9090"
"""Where Prometheus answers when a metric names no ``url`` (its own default address)."""


def prometheus_provider(_: Any) -> PrometheusProvider:
    """The registry's factory: a metric names its server with ``url`` (else DEFAULT_URL)."""
    return PrometheusProvider(DEFAULT_URL)


def _sample(body: bytes, source: str) -> Measurement:
    try:
        answer = json.loads(body)
    except (ValueError, RecursionError):
        return Measurement.no_data("Prometheus answered something that is not JSON", source)
    if not isinstance(answer, dict):
        return Measurement.no_data("Prometheus answered JSON of an unknown shape", source)
    if answer.get("status") != "success":
        reason = _prometheus_error(body) or "no error text"
        return Measurement.no_data(f"Prometheus refused the query: {reason}", source)
    data = answer.get("data")
    kind = data.get("resultType") if isinstance(data, dict) else None
    result = data.get("result") if isinstance(data, dict) else None
    if kind == "scalar":
        return _value(result, source)
    if kind != "vector" or not isinstance(result, list):
        return Measurement.no_data(
            f"the query returns a {kind or 'result of no known type'}, not a single sample "
            "(write an instant vector of one series, or a scalar)",
            source,
        )
    if not result:
        return Measurement.no_data("no series: the query matched nothing", source)
    if len(result) > 1:
        named = ", ".join(_labels(item) for item in result[:_SERIES_NAMED])
        more = f" and {len(result) - _SERIES_NAMED} more" if len(result) > _SERIES_NAMED else ""
        return Measurement.no_data(
            f"the query returns {len(result)} series, not one: {named}{more} "
            "(aggregate them, e.g. with sum(...))",
            source,
        )
    item = result[0]
    return _value(item.get("value") if isinstance(item, dict) else None, source)


def _value(pair: Any, source: str) -> Measurement:
    if not isinstance(pair, list) or len(pair) != 2 or not isinstance(pair[1], str):
        return Measurement.no_data("Prometheus answered a sample of an unknown shape", source)
    try:
        value = float(pair[1])
    except ValueError:
        return Measurement.no_data(f"Prometheus answered {pair[1]!r}, not a number", source)
    if not math.isfinite(value):
        reason = f"the query's value is {pair[1]}, not a finite number (0/0 with no requests?)"
        return Measurement.no_data(reason, source)
    return Measurement.of(value, source)


def _prometheus_error(body: bytes) -> str | None:
    try:
        answer = json.loads(body)
    except (ValueError, RecursionError):
        return None
    if not isinstance(answer, dict) or not isinstance(answer.get("error"), str):
        return None
    kind = answer.get("errorType")
    return f"{kind}: {answer['error']}" if isinstance(kind, str) else str(answer["error"])


def _labels(item: Any) -> str:
    metric = item.get("metric") if isinstance(item, dict) else None
    if not isinstance(metric, Mapping):
        return "{}"
    name = str(metric.get("__name__", ""))
    pairs = ",".join(f'{k}="{v}"' for k, v in sorted(metric.items()) if k != "__name__")
    return f"{name}{{{pairs}}}"
