"""The route table: which versions exist, their upstream instances, weights and stickiness.

A table is an immutable value, validated as a whole when it is built from JSON or changed, so
the router only ever holds a table that makes sense. It knows nothing of sockets or requests.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any, Literal

from shipyard.cd.router.errors import InvalidRoutes

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}")
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]{1,64}")
_HOSTNAME = re.compile(r"[A-Za-z0-9]([A-Za-z0-9-]{0,62})(\.[A-Za-z0-9]([A-Za-z0-9-]{0,62}))*")
_PATH = re.compile(r"/[\x21-\x7e]{0,1023}")
_VERSION_NAME_HINT = "letters, digits, '.', '_' and '-', starting with a letter or digit"


@dataclass(frozen=True)
class Instance:
    """One upstream process of a version, reached at ``host:port``."""

    host: str
    port: int
    drained: bool = False

    @property
    def address(self) -> str:
        """``host:port``, with brackets around an IPv6 host."""
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    def as_json(self) -> dict[str, Any]:
        """The JSON form used by the admin API and the state file."""
        return {"address": self.address, "drained": self.drained}


@dataclass(frozen=True)
class Version:
    """A version of the service: its share of the traffic and the instances that run it."""

    name: str
    weight: int
    instances: tuple[Instance, ...]

    def as_json(self) -> dict[str, Any]:
        """The JSON form used by the admin API and the state file."""
        return {
            "name": self.name,
            "weight": self.weight,
            "instances": [instance.as_json() for instance in self.instances],
        }


@dataclass(frozen=True)
class Stickiness:
    """Keep a client on one version: by the value of a header, or of a cookie."""

    kind: Literal["header", "cookie"]
    name: str

    def as_json(self) -> dict[str, str]:
        """The JSON form: ``{"header": NAME}`` or ``{"cookie": NAME}``."""
        return {self.kind: self.name}


@dataclass(frozen=True)
class HealthCheck:
    """An active health check: GET ``path`` on every instance each ``interval`` seconds."""

    path: str
    interval: float = 2.0
    timeout: float = 1.0

    def as_json(self) -> dict[str, Any]:
        """The JSON form used by the admin API and the state file."""
        return {"path": self.path, "interval": self.interval, "timeout": self.timeout}


@dataclass(frozen=True)
class RouteTable:
    """Every version with its weight (summing to 100) and instances; how clients stick."""

    versions: tuple[Version, ...] = ()
    sticky: Stickiness | None = None
    health: HealthCheck | None = None

    def version(self, name: str) -> Version | None:
        """The version called ``name``, if any."""
        for version in self.versions:
            if version.name == name:
                return version
        return None

    def instance(self, address: str) -> tuple[Version, Instance] | None:
        """The version and instance at ``address``, if any."""
        for version in self.versions:
            for instance in version.instances:
                if instance.address == address:
                    return version, instance
        return None

    @property
    def weights(self) -> dict[str, int]:
        """Each version's weight, by name."""
        return {version.name: version.weight for version in self.versions}

    def with_weights(self, weights: Mapping[str, object]) -> RouteTable:
        """A copy with new weights for the named versions; validated as a whole."""
        problems = []
        unknown = sorted(name for name in weights if self.version(name) is None)
        if unknown:
            problems.append(f"no version named {', '.join(map(repr, unknown))}")
        for name, weight in weights.items():
            if not _is_weight(weight):
                problems.append(f"the weight of {name!r} must be an integer from 0 to 100")
        if problems:
            raise InvalidRoutes(problems, hint=f"versions: {', '.join(self.weights) or 'none'}")
        new = {name: weight for name, weight in weights.items() if isinstance(weight, int)}
        versions = tuple(
            replace(v, weight=new[v.name]) if v.name in new else v for v in self.versions
        )
        return _validated(replace(self, versions=versions))

    def with_drained(self, address: str, drained: bool) -> RouteTable:
        """A copy where the instance at ``address`` is drained (or back in service)."""
        if self.instance(address) is None:
            raise InvalidRoutes(
                [f"no instance at {address!r}"],
                hint="instances: "
                + (", ".join(i.address for v in self.versions for i in v.instances) or "none"),
            )
        versions = tuple(
            replace(
                v,
                instances=tuple(
                    replace(i, drained=drained) if i.address == address else i for i in v.instances
                ),
            )
            for v in self.versions
        )
        return replace(self, versions=versions)

    def as_json(self) -> dict[str, Any]:
        """The JSON form used by the admin API and the state file."""
        return {
            "versions": [version.as_json() for version in self.versions],
            "sticky": self.sticky.as_json() if self.sticky else None,
            "health": self.health.as_json() if self.health else None,
        }

    @classmethod
    def from_json(cls, data: object) -> RouteTable:
        """Build and validate a table from its JSON form; ``InvalidRoutes`` lists every problem."""
        problems: list[str] = []
        if not isinstance(data, dict):
            raise InvalidRoutes(["the routes must be a JSON object"])
        unknown = sorted(set(data) - {"versions", "sticky", "health"})
        if unknown:
            problems.append(f"unknown key {', '.join(map(repr, unknown))}")
        raw_versions = data.get("versions", [])
        versions: list[Version] = []
        if not isinstance(raw_versions, list):
            problems.append("'versions' must be a list")
        else:
            for index, raw in enumerate(raw_versions):
                version = _version(raw, f"versions[{index}]", problems)
                if version is not None:
                    versions.append(version)
        sticky = _sticky(data.get("sticky"), problems)
        health = _health(data.get("health"), problems)
        if problems:
            raise InvalidRoutes(problems)
        return _validated(cls(versions=tuple(versions), sticky=sticky, health=health))


def parse_address(text: object, where: str, problems: list[str]) -> tuple[str, int] | None:
    """``host:port`` (IPv6 in brackets) split and checked; a problem is added if it is bad."""
    if not isinstance(text, str) or not text:
        problems.append(f"{where}: an address must be a string 'host:port'")
        return None
    host, sep, port_text = text.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            host = ""
    elif not (_is_ipv4(host) or _HOSTNAME.fullmatch(host)):
        host = ""
    if not sep or not host or not port_text.isdigit() or not 0 < int(port_text) < 65536:
        problems.append(f"{where}: {text!r} is not 'host:port' with a port from 1 to 65535")
        return None
    return host, int(port_text)


def _is_ipv4(text: str) -> bool:
    try:
        ipaddress.IPv4Address(text)
    except ValueError:
        return False
    return True


def _is_weight(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 100


def _version(raw: object, where: str, problems: list[str]) -> Version | None:
    if not isinstance(raw, dict):
        problems.append(f"{where}: a version must be an object with name, weight and instances")
        return None
    unknown = sorted(set(raw) - {"name", "weight", "instances"})
    if unknown:
        problems.append(f"{where}: unknown key {', '.join(map(repr, unknown))}")
    name = raw.get("name")
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        problems.append(f"{where}: the name must be {_VERSION_NAME_HINT}")
        return None
    where = f"version {name!r}"
    weight = raw.get("weight")
    if not _is_weight(weight):
        problems.append(f"{where}: the weight must be an integer from 0 to 100")
        return None
    assert isinstance(weight, int)
    raw_instances = raw.get("instances", [])
    if not isinstance(raw_instances, list):
        problems.append(f"{where}: 'instances' must be a list")
        return None
    instances = []
    for raw_instance in raw_instances:
        drained = False
        address: object = raw_instance
        if isinstance(raw_instance, dict):
            extra = sorted(set(raw_instance) - {"address", "drained"})
            if extra:
                problems.append(f"{where}: unknown instance key {', '.join(map(repr, extra))}")
            address = raw_instance.get("address")
            drained_value = raw_instance.get("drained", False)
            if not isinstance(drained_value, bool):
                problems.append(f"{where}: 'drained' must be true or false")
            drained = drained_value is True
        parsed = parse_address(address, where, problems)
        if parsed is not None:
            instances.append(Instance(parsed[0], parsed[1], drained))
    return Version(name, weight, tuple(instances))


def _sticky(raw: object, problems: list[str]) -> Stickiness | None:
    if raw is None:
        return None
    if isinstance(raw, dict) and len(raw) == 1:
        ((kind, name),) = raw.items()
        if kind in ("header", "cookie") and isinstance(name, str) and _TOKEN.fullmatch(name):
            if kind == "header" and name.lower() == "x-shipyard-version":
                problems.append("sticky: X-Shipyard-Version is the override header")
                return None
            return Stickiness("header" if kind == "header" else "cookie", name)
    problems.append("sticky: must be null, {'header': NAME} or {'cookie': NAME}, NAME a token")
    return None


def _health(raw: object, problems: list[str]) -> HealthCheck | None:
    if raw is None:
        return None
    if not isinstance(raw, dict) or set(raw) - {"path", "interval", "timeout"}:
        problems.append("health: must be null or an object with path, interval and timeout")
        return None
    path = raw.get("path")
    interval = raw.get("interval", 2.0)
    timeout = raw.get("timeout", 1.0)
    if not isinstance(path, str) or not _PATH.fullmatch(path):
        problems.append("health: 'path' must be an absolute path such as /healthz")
        return None
    numbers = (interval, timeout)
    if not all(isinstance(n, int | float) and not isinstance(n, bool) for n in numbers):
        problems.append("health: 'interval' and 'timeout' must be numbers of seconds")
        return None
    assert isinstance(interval, int | float) and isinstance(timeout, int | float)
    if not 0.05 <= interval <= 3600 or not 0.05 <= timeout <= interval:
        problems.append("health: need 0.05 <= timeout <= interval <= 3600 seconds")
        return None
    return HealthCheck(path, float(interval), float(timeout))


def _validated(table: RouteTable) -> RouteTable:
    problems = []
    names = [version.name for version in table.versions]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        problems.append(f"version {', '.join(map(repr, duplicates))} is listed twice")
    total = sum(version.weight for version in table.versions)
    if table.versions and total != 100:
        problems.append(f"the weights add up to {total}, not 100")
    seen: set[str] = set()
    for version in table.versions:
        if version.weight > 0 and not version.instances:
            problems.append(f"version {version.name!r} has weight {version.weight} but no instance")
        for instance in version.instances:
            if instance.address in seen:
                problems.append(f"instance {instance.address} is listed more than once")
            seen.add(instance.address)
    if problems:
        raise InvalidRoutes(sorted(set(problems), key=problems.index))
    return table
