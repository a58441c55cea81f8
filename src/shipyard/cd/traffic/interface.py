"""The traffic-router interface: how a strategy steers requests between versions.

A strategy sets weights, verifies what the router serves, and reads per-version statistics
only through this interface (as Argo Rollouts' traffic-routing reconcilers do), so another
router (HAProxy's runtime API, a service mesh) fits without touching any strategy. Adapters
never write the store.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType

from shipyard.cd.instances import InstanceRef
from shipyard.cd.router.stats import RouterStats
from shipyard.core.errors import HostError, UserError


class TrafficError(HostError):
    """A router could not be reached, or refused or did not apply what was asked."""


class InvalidWeights(UserError):
    """Weights that do not make a routing table (a negative weight, not summing to 100)."""


@dataclass(frozen=True)
class Backend:
    """One version's share of the traffic (0-100) and the instances that serve it."""

    weight: int
    instances: tuple[InstanceRef, ...]


class Weights(Mapping[str, Backend]):
    """The one way a routing table is built: versions with weights summing to 100.

    A version at weight 0 keeps its instances known to the router (warm, previewable with the
    version header) without receiving weighted traffic.
    """

    __slots__ = ("_backends",)

    def __init__(self, backends: Mapping[str, Backend]) -> None:
        if not backends:
            raise InvalidWeights("a routing table needs at least one version")
        for version, backend in backends.items():
            if not 0 <= backend.weight <= 100:
                raise InvalidWeights(f"{version}: weight {backend.weight} is not within 0-100")
        total = sum(b.weight for b in backends.values())
        if total != 100:
            shown = ", ".join(f"{v}={b.weight}" for v, b in backends.items())
            raise InvalidWeights(f"weights must sum to 100, not {total} ({shown})")
        self._backends = MappingProxyType(dict(sorted(backends.items())))

    @classmethod
    def all_to(cls, version: str, instances: Sequence[InstanceRef]) -> Weights:
        """Every request to ``version``."""
        return cls({version: Backend(100, tuple(instances))})

    @classmethod
    def split(
        cls,
        stable: tuple[str, Sequence[InstanceRef]],
        canary: tuple[str, Sequence[InstanceRef]],
        canary_weight: int,
    ) -> Weights:
        """``canary_weight`` percent to the canary, the rest to the stable version.

        The same version on both sides (a redeploy) gets everything on the canary's instances.
        """
        if stable[0] == canary[0]:
            return cls.all_to(*canary)
        return cls(
            {
                stable[0]: Backend(100 - canary_weight, tuple(stable[1])),
                canary[0]: Backend(canary_weight, tuple(canary[1])),
            }
        )

    @classmethod
    def by_instances(cls, groups: Sequence[tuple[str, Sequence[InstanceRef]]]) -> Weights:
        """Each version's share in proportion to its serving instances (a rolling update).

        Groups of the same version are merged; a version with no instance gets nothing. Shares
        are rounded to whole percents by largest remainder, so they always sum to 100.
        """
        serving: dict[str, list[InstanceRef]] = {}
        for version, instances in groups:
            if instances:
                serving.setdefault(version, []).extend(instances)
        total = sum(len(instances) for instances in serving.values())
        if not total:
            raise InvalidWeights("a routing table needs at least one instance to serve")
        exact = {version: 100 * len(instances) / total for version, instances in serving.items()}
        shares = {version: int(share) for version, share in exact.items()}
        left = 100 - sum(shares.values())
        for version in sorted(exact, key=lambda v: (shares[v] - exact[v], v))[:left]:
            shares[version] += 1
        return cls(
            {
                version: Backend(shares[version], tuple(instances))
                for version, instances in serving.items()
            }
        )

    def with_idle(self, version: str | None, instances: Sequence[InstanceRef]) -> Weights:
        """The same table plus ``version`` at weight 0 (kept reachable, e.g. warm or preview)."""
        if not version or not instances or version in self._backends:
            return self
        return Weights({**self._backends, version: Backend(0, tuple(instances))})

    def percentages(self) -> dict[str, int]:
        """Each version's weight."""
        return {version: backend.weight for version, backend in self._backends.items()}

    def __getitem__(self, version: str) -> Backend:
        return self._backends[version]

    def __iter__(self) -> Iterator[str]:
        return iter(self._backends)

    def __len__(self) -> int:
        return len(self._backends)

    def __repr__(self) -> str:
        return f"Weights({self.percentages()})"


class TrafficRouter(ABC):
    """Steers one environment's traffic between versions."""

    @abstractmethod
    def set_weights(self, weights: Weights) -> str:
        """Apply ``weights`` atomically; return the public address clients use."""

    @abstractmethod
    def current_weights(self) -> dict[str, int]:
        """The weight of each version the router serves now (to verify a change took)."""

    @abstractmethod
    def statistics(self, *, reset: bool = False) -> RouterStats:
        """Per-version statistics of weighted traffic (pinned previews are not in them).

        ``reset`` starts a new window after reading, so the next read covers only what follows.
        """

    def assigns_at_random(self) -> bool:
        """Whether each weighted request goes to a version at random by weight (no stickiness
        that sends a client's requests to one version), as some statistical tests assume."""
        return True

    def verify(self, weights: Weights) -> None:
        """Raise TrafficError unless the router serves exactly ``weights`` now."""
        wanted, actual = weights.percentages(), self.current_weights()
        if actual != wanted:
            raise TrafficError(
                f"the router serves {actual or 'nothing'}, not the weights set {wanted}",
                hint="another process changed the routes; see 'shipyard audit list'",
            )
