"""The router's counters and gauges in the Prometheus text exposition format.

Served on the admin port only: the public port belongs to the user's service. Per-version
request and feedback series carry ``traffic="weighted"`` or ``traffic="pinned"`` (previews asked
for with the version header), so a query can leave previews out.
"""

from __future__ import annotations

from shipyard.cd.router.balancer import RoutePlan
from shipyard.cd.router.stats import ERROR_KINDS, LATENCY_BOUNDS, STATUS_CLASSES, StatsBook


def metrics_text(
    env_name: str, stats: StatsBook, plan: RoutePlan, now: float, client_connections: int
) -> str:
    """The counters and gauges of the router of ``env_name``, its plan evaluated at ``now``."""
    env = _label(env_name)
    lines: list[str] = []

    def family(name: str, kind: str, help_text: str) -> None:
        """Start a metric family: its HELP and TYPE lines."""
        lines.append(f"# HELP shipyard_router_{name} {help_text}")
        lines.append(f"# TYPE shipyard_router_{name} {kind}")

    # Each version's weighted requests, then those pinned to it by the version header.
    recorders = [
        (f'version="{_label(name)}",', traffic, counted)
        for name, recorder in sorted(stats.recorders.items())
        for traffic, counted in (("weighted", recorder), ("pinned", recorder.pinned))
        if counted is not None
    ]
    family("requests_total", "counter", "Requests answered, by version, status class, traffic.")
    for labelled, traffic, recorder in recorders:
        for index, code in enumerate(STATUS_CLASSES):
            value = recorder.totals.classes[index + 1]
            labels = f'env="{env}",{labelled}code="{code}",traffic="{traffic}"'
            lines.append(f"shipyard_router_requests_total{{{labels}}} {value}")
    family("upstream_errors_total", "counter", "Requests failed by the upstream, by kind.")
    for labelled, traffic, recorder in recorders:
        for kind in ERROR_KINDS:
            labels = f'env="{env}",{labelled}kind="{kind}",traffic="{traffic}"'
            value = recorder.totals.errors[kind]
            lines.append(f"shipyard_router_upstream_errors_total{{{labels}}} {value}")
    family("connect_failures_total", "counter", "Failed connections to a version's instances.")
    for labelled, traffic, recorder in recorders:
        labels = f'env="{env}",{labelled}traffic="{traffic}"'
        value = recorder.totals.connect_failures
        lines.append(f"shipyard_router_connect_failures_total{{{labels}}} {value}")
    family("client_aborts_total", "counter", "Requests abandoned by their client.")
    for labelled, traffic, recorder in recorders:
        labels = f'env="{env}",{labelled}traffic="{traffic}"'
        value = recorder.totals.client_aborts
        lines.append(f"shipyard_router_client_aborts_total{{{labels}}} {value}")
    family("request_duration_seconds", "histogram", "Time from request head to response end.")
    for labelled, traffic, recorder in recorders:
        base = f'env="{env}",{labelled}traffic="{traffic}"'
        cumulative = 0
        for bound, count in zip((*LATENCY_BOUNDS, None), recorder.totals.buckets, strict=True):
            cumulative += count
            le = "+Inf" if bound is None else repr(bound)
            lines.append(
                f'shipyard_router_request_duration_seconds_bucket{{{base},le="{le}"}} {cumulative}'
            )
        lines.append(
            f"shipyard_router_request_duration_seconds_sum{{{base}}} {recorder.totals.latency_sum}"
        )
        lines.append(f"shipyard_router_request_duration_seconds_count{{{base}}} {cumulative}")
    family("feedback_complaints_total", "counter", "Complaints users posted, by version.")
    for labelled, traffic, recorder in recorders:
        labels = f'env="{env}",{labelled}traffic="{traffic}"'
        value = recorder.totals.complaints
        lines.append(f"shipyard_router_feedback_complaints_total{{{labels}}} {value}")
    family("feedback_score", "summary", "Scores (1 to 5) users posted, by version.")
    for labelled, traffic, recorder in recorders:
        labels = f'env="{env}",{labelled}traffic="{traffic}"'
        totals = recorder.totals
        lines.append(f"shipyard_router_feedback_score_sum{{{labels}}} {totals.score_sum}")
        lines.append(f"shipyard_router_feedback_score_count{{{labels}}} {totals.scores}")
    family("version_weight", "gauge", "Share of new requests (percent) each version gets.")
    for version in plan.versions:
        labels = f'env="{env}",version="{_label(version.name)}"'
        lines.append(f"shipyard_router_version_weight{{{labels}}} {version.weight}")
    instances = [
        (f'env="{env}",version="{_label(version.name)}",instance="{_label(state.address)}"', state)
        for version in plan.versions
        for state in version.instances
    ]
    family("instance_available", "gauge", "1 if the instance gets new requests.")
    for labels, state in instances:
        up = 1 if state.available(now) else 0
        lines.append(f"shipyard_router_instance_available{{{labels}}} {up}")
    family("instance_in_flight", "gauge", "Requests an instance is serving now.")
    for labels, state in instances:
        lines.append(f"shipyard_router_instance_in_flight{{{labels}}} {state.in_flight}")
    family("client_connections", "gauge", "Open client connections.")
    lines.append(f'shipyard_router_client_connections{{env="{env}"}} {client_connections}')
    family("rejected_requests_total", "counter", "Malformed requests answered with a 4xx.")
    lines.append(f'shipyard_router_rejected_requests_total{{env="{env}"}} {stats.rejected}')
    family("unrouted_requests_total", "counter", "Requests answered 503 for want of routes.")
    lines.append(f'shipyard_router_unrouted_requests_total{{env="{env}"}} {stats.unrouted}')
    family("routes_revision", "gauge", "Revision of the current route table.")
    lines.append(f'shipyard_router_routes_revision{{env="{env}"}} {plan.revision}')
    return "\n".join(lines) + "\n"


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
