"""The ``osv-api`` source: the OSV API's batch query, then each record by id, cached on disk.

A record is fetched from ``/v1/vulns/ID`` only when the cache lacks its current ``modified``
version. Every network or protocol failure is an ``AdvisorySourceError`` naming the URL; it
never reads as "no vulnerabilities".
"""

from __future__ import annotations

import json
import os
import re
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, ClassVar

from shipyard import __version__
from shipyard.core.config.gates import VulnerabilityGateSettings
from shipyard.gates.advisories.interface import AdvisorySource, PackageVersion
from shipyard.gates.advisories.model import Advisory, InvalidAdvisory, parse_advisory
from shipyard.gates.documents import parse_json
from shipyard.gates.interface import AdvisorySourceError

BATCH_SIZE = 1000
"""The most queries the OSV API accepts in one batch."""

MAX_PAGES = 50
"""The most follow-up pages read for one batch before giving up."""

_FETCHERS = 8
_SAFE_ID = re.compile(r"[A-Za-z0-9._:-]{1,200}")
_HINT = (
    "check the network and gates.vulnerabilities.osv_api.url, or scan offline with the "
    "local source ('shipyard advisories import PATH', sources: [local])"
)


class OsvApi(AdvisorySource):
    """The OSV API, with the records it returns cached by id and modification time."""

    name: ClassVar[str] = "osv-api"
    description: ClassVar[str] = "the OSV API"

    def __init__(self, url: str, *, timeout: float, cache_dir: Path) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout
        self.cache_dir = cache_dir

    @classmethod
    def from_settings(cls, settings: VulnerabilityGateSettings, state_root: Path) -> OsvApi:
        """The API named by ``gates.vulnerabilities.osv_api``, cached in the state directory."""
        return cls(
            settings.osv_api.url,
            timeout=settings.osv_api.timeout.total_seconds(),
            cache_dir=state_root / "advisories" / "osv-api",
        )

    def advisories(
        self, packages: Sequence[PackageVersion]
    ) -> Mapping[PackageVersion, Sequence[Advisory]]:
        """The records the API lists for each package version."""
        unique = list(dict.fromkeys(packages))
        listed: dict[PackageVersion, list[tuple[str, str | None]]] = {}
        for start in range(0, len(unique), BATCH_SIZE):
            listed.update(self._query(unique[start : start + BATCH_SIZE]))
        wanted = {vuln_id: modified for found in listed.values() for vuln_id, modified in found}
        records = self._records(wanted)
        return {
            package: [records[vuln_id] for vuln_id, _ in listed.get(package, [])]
            for package in unique
        }

    def _query(
        self, packages: list[PackageVersion]
    ) -> dict[PackageVersion, list[tuple[str, str | None]]]:
        found: dict[PackageVersion, list[tuple[str, str | None]]] = {p: [] for p in packages}
        pending: dict[PackageVersion, str | None] = dict.fromkeys(packages)
        for _ in range(MAX_PAGES):
            order = list(pending)
            queries = []
            for package in order:
                query: dict[str, Any] = {
                    "package": {"ecosystem": package.ecosystem, "name": package.name},
                    "version": package.version,
                }
                if pending[package]:
                    query["page_token"] = pending[package]
                queries.append(query)
            answer = self._post("/v1/querybatch", {"queries": queries})
            results = answer.get("results") if isinstance(answer, dict) else None
            if not isinstance(results, list) or len(results) != len(order):
                raise self._protocol(
                    "/v1/querybatch", "the answer does not hold one result per query"
                )
            pending = {}
            for package, result in zip(order, results, strict=True):
                if not isinstance(result, dict):
                    raise self._protocol("/v1/querybatch", "a result is not an object")
                for vuln in result.get("vulns") or []:
                    vuln_id = vuln.get("id") if isinstance(vuln, dict) else None
                    if not isinstance(vuln_id, str) or not _SAFE_ID.fullmatch(vuln_id):
                        raise self._protocol("/v1/querybatch", f"a vulnerability id is {vuln_id!r}")
                    modified = vuln.get("modified")
                    found[package].append(
                        (vuln_id, modified if isinstance(modified, str) else None)
                    )
                token = result.get("next_page_token")
                if isinstance(token, str) and token:
                    pending[package] = token
            if not pending:
                return found
        raise self._protocol("/v1/querybatch", f"more than {MAX_PAGES} pages of results")

    def _records(self, wanted: Mapping[str, str | None]) -> dict[str, Advisory]:
        records: dict[str, Advisory] = {}
        missing = []
        for vuln_id, modified in wanted.items():
            cached = self._cached(vuln_id, modified)
            if cached is None:
                missing.append(vuln_id)
            else:
                records[vuln_id] = cached
        if missing:
            with ThreadPoolExecutor(max_workers=min(_FETCHERS, len(missing))) as pool:
                for vuln_id, advisory in zip(missing, pool.map(self._fetch, missing), strict=True):
                    records[vuln_id] = advisory
        return records

    def _fetch(self, vuln_id: str) -> Advisory:
        path = f"/v1/vulns/{urllib.parse.quote(vuln_id, safe='')}"
        raw = self._get(path)
        try:
            advisory = parse_advisory(raw, f"{self.url}{path}")
        except InvalidAdvisory as exc:
            raise AdvisorySourceError(
                exc.message, hint="the OSV API returned an invalid record"
            ) from None
        self._store(vuln_id, raw)
        return advisory

    def _cache_file(self, vuln_id: str) -> Path:
        return self.cache_dir / f"{vuln_id}.json"

    def _cached(self, vuln_id: str, modified: str | None) -> Advisory | None:
        path = self._cache_file(vuln_id)
        try:
            raw = parse_json(path.read_text(encoding="utf-8"))
            advisory = parse_advisory(raw, str(path))
        except (OSError, ValueError, InvalidAdvisory):
            return None
        if modified is None or raw.get("modified") != modified:
            return None
        return advisory

    def _store(self, vuln_id: str, raw: Any) -> None:
        try:
            self.cache_dir.mkdir(parents=True, exist_ok=True)
            handle, temp = tempfile.mkstemp(dir=self.cache_dir, suffix=".tmp")
            with os.fdopen(handle, "w", encoding="utf-8") as stream:
                json.dump(raw, stream)
            Path(temp).replace(self._cache_file(vuln_id))
        except OSError:
            return  # a cache that cannot be written only costs another fetch next time

    def _post(self, path: str, body: Any) -> Any:
        data = json.dumps(body).encode("utf-8")
        return self._call(path, data)

    def _get(self, path: str) -> Any:
        return self._call(path, None)

    def _call(self, path: str, data: bytes | None) -> Any:
        url = f"{self.url}{path}"
        request = urllib.request.Request(  # noqa: S310 - the URL is checked to be http(s)
            url,
            data=data,
            method="POST" if data is not None else "GET",
            headers={
                "Content-Type": "application/json",
                "Accept": "application/json",
                "User-Agent": f"shipyard/{__version__}",
            },
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:  # noqa: S310
                payload = response.read()
        except urllib.error.HTTPError as exc:
            raise AdvisorySourceError(
                f"the OSV API at {url} answered {exc.code} {exc.reason}", hint=_HINT
            ) from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise AdvisorySourceError(
                f"the OSV API at {url} cannot be reached: {reason}", hint=_HINT
            ) from None
        try:
            return parse_json(payload)
        except ValueError:
            raise self._protocol(path, "the answer is not JSON") from None

    def _protocol(self, path: str, problem: str) -> AdvisorySourceError:
        return AdvisorySourceError(
            f"the OSV API at {self.url}{path} gave an unexpected answer: {problem}", hint=_HINT
        )
