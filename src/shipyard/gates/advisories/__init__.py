"""Advisory data for the vulnerabilities gate: OSV records, where they come from, how they match.

``SOURCES`` maps the names ``gates.vulnerabilities.sources`` uses to the source classes; the
gate asks sources for candidate records and ``matching`` decides, so every source is judged
alike. Nothing here reads a project's dependencies.
"""

from __future__ import annotations

from shipyard.core.config import did_you_mean
from shipyard.gates.advisories.interface import AdvisorySource, Freshness, PackageVersion
from shipyard.gates.advisories.local import (
    AdvisoryImportError,
    ImportSummary,
    IndexStatus,
    LocalIndex,
    import_advisories,
    index_path,
    index_status,
)
from shipyard.gates.advisories.model import Advisory, Affected, Event, InvalidAdvisory, Range
from shipyard.gates.advisories.osv_api import OsvApi
from shipyard.gates.interface import AdvisorySourceError

SOURCES: dict[str, type[AdvisorySource]] = {LocalIndex.name: LocalIndex, OsvApi.name: OsvApi}
"""Advisory sources by the name ``gates.vulnerabilities.sources`` uses."""


def source_named(name: str) -> type[AdvisorySource]:
    """The source registered as ``name``; ``AdvisorySourceError`` with a suggestion otherwise."""
    try:
        return SOURCES[name]
    except KeyError:
        raise AdvisorySourceError(
            f"there is no advisory source named {name!r}",
            hint=did_you_mean(name, SOURCES) or f"the sources are: {', '.join(SOURCES)}",
        ) from None


__all__ = [
    "SOURCES",
    "Advisory",
    "AdvisoryImportError",
    "AdvisorySource",
    "Affected",
    "Event",
    "Freshness",
    "ImportSummary",
    "IndexStatus",
    "InvalidAdvisory",
    "LocalIndex",
    "OsvApi",
    "PackageVersion",
    "Range",
    "import_advisories",
    "index_path",
    "index_status",
    "source_named",
]
