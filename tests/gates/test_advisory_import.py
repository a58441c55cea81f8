"""Importing OSV records into the local index: folders, zips, YAML, and every kind of bad input."""

from __future__ import annotations

import json
import zipfile
from datetime import timedelta
from pathlib import Path

import pytest

from gates.gatesupport import NOW, osv, write_records
from shipyard.gates.advisories import (
    AdvisoryImportError,
    Freshness,
    LocalIndex,
    PackageVersion,
    import_advisories,
    index_path,
    index_status,
)
from shipyard.gates.advisories.local import MAX_RECORD_BYTES
from shipyard.gates.advisories.matching import is_affected
from shipyard.gates.interface import AdvisorySourceError


def test_a_folder_of_json_and_yaml_records_is_indexed(tmp_path: Path, state_root: Path) -> None:
    data = tmp_path / "db"
    write_records(data / "a", [osv("PYSEC-1", "alpha", events=[{"introduced": "0"}])])
    write_records(
        data / "b",
        [osv("PYSEC-2", "Beta_Pkg", versions=["1.0"], modified=NOW - timedelta(hours=3))],
        as_yaml=True,
    )
    (data / "README.md").write_text("not a record")
    summary = import_advisories(data, state_root, now=NOW)
    assert (summary.records, summary.packages) == (2, 2)
    assert summary.newest_modified == NOW - timedelta(hours=3)
    status = index_status(state_root)
    assert status.records == 2
    assert status.freshness.age(NOW) == 3 * 3600
    found = LocalIndex(state_root).advisories([PackageVersion("PyPI", "beta-pkg", "1.0")])
    assert [a.id for a in next(iter(found.values()))] == ["PYSEC-2"]


def test_yaml_versions_stay_text(tmp_path: Path, state_root: Path) -> None:
    # Unquoted, 1.10 is the float 1.1 to a YAML 1.1 loader; the import must keep the text.
    data = tmp_path / "db"
    data.mkdir()
    (data / "PYSEC-3.yaml").write_text(
        "id: PYSEC-3\nmodified: 2026-05-01T00:00:00Z\naffected:\n"
        "- package: {ecosystem: PyPI, name: demo}\n  versions:\n  - 1.10\n"
    )
    import_advisories(data, state_root, now=NOW)
    found = LocalIndex(state_root).advisories([PackageVersion("PyPI", "demo", "1.10")])
    [advisory] = next(iter(found.values()))
    assert is_affected(advisory, "PyPI", "demo", "1.10")
    assert not is_affected(advisory, "PyPI", "demo", "1.1")


def test_a_zip_is_read_like_a_folder(tmp_path: Path, state_root: Path) -> None:
    archive = tmp_path / "osv.zip"
    with zipfile.ZipFile(archive, "w") as zipped:
        zipped.writestr("PYSEC-1.json", json.dumps(osv("PYSEC-1", versions=["1.0"])))
        zipped.writestr("nested/GHSA-x.json", json.dumps(osv("GHSA-x", versions=["2.0"])))
    assert import_advisories(archive, state_root, now=NOW).records == 2


def test_withdrawn_records_and_other_ecosystems_are_skipped_and_counted(
    tmp_path: Path, state_root: Path
) -> None:
    data = write_records(
        tmp_path / "db",
        [
            osv("PYSEC-1", versions=["1.0"]),
            osv("PYSEC-2", versions=["1.0"], withdrawn=NOW - timedelta(days=2)),
            osv("GO-1", ecosystem="Go", versions=["v1.0.0"]),
        ],
    )
    summary = import_advisories(data, state_root, now=NOW)
    assert summary.records == 1
    assert summary.withdrawn == 1
    assert dict(summary.other_ecosystems) == {"Go": 1}


def test_a_corrupt_file_is_named_and_nothing_is_imported(tmp_path: Path, state_root: Path) -> None:
    data = write_records(tmp_path / "db", [osv("PYSEC-1", versions=["1.0"])])
    (data / "PYSEC-2.json").write_text('{"id": "PYSEC-2", ')
    with pytest.raises(AdvisoryImportError) as caught:
        import_advisories(data, state_root, now=NOW)
    assert f"{data / 'PYSEC-2.json'}: not valid JSON" in caught.value.message
    assert not index_path(state_root).exists()


def test_a_corrupt_yaml_file_is_named(tmp_path: Path, state_root: Path) -> None:
    data = tmp_path / "db"
    data.mkdir()
    (data / "PYSEC-9.yaml").write_text("id: PYSEC-9\naffected: [\n")
    with pytest.raises(AdvisoryImportError, match=r"PYSEC-9\.yaml: not valid YAML"):
        import_advisories(data, state_root, now=NOW)


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda r: r.pop("modified"), "PYSEC-5): modified: is missing"),
        (lambda r: r.update(modified="yesterday"), "'yesterday' is not an RFC 3339 timestamp"),
        (lambda r: r.update(affected="demo"), "affected: expected a list, got a string"),
        (
            lambda r: r["affected"][0]["ranges"][0].update(type="DATES"),
            "affected[0].ranges[0].type: unknown range type 'DATES'",
        ),
        (
            lambda r: r["affected"][0]["ranges"][0].update(events=[{"fixed": "1.0"}]),
            "affected[0].ranges[0].events: a range needs an 'introduced' event",
        ),
        (
            lambda r: r["affected"][0]["ranges"][0]["events"].append(
                {"introduced": "2.0", "fixed": "3.0"}
            ),
            "events[2]: an event has exactly one of introduced, fixed",
        ),
        (
            lambda r: r["affected"][0]["ranges"][0]["events"].append({"last_affected": "3.0"}),
            "either 'fixed' or 'last_affected' events, not both",
        ),
        (
            lambda r: r["affected"][0]["package"].update(ecosystem="pypi"),
            "unknown ecosystem 'pypi'; ecosystem names are case-sensitive: did you mean 'PyPI'?",
        ),
        (
            lambda r: r["affected"][0].update(versions=[1.1]),
            "affected[0].versions[0]: expected a string, got the number 1.1",
        ),
    ],
)
def test_a_schema_invalid_record_is_named_with_its_field(
    tmp_path: Path, state_root: Path, change: object, expected: str
) -> None:
    record = osv("PYSEC-5", events=[{"introduced": "0"}, {"fixed": "1.0"}])
    change(record)  # type: ignore[operator]
    data = write_records(tmp_path / "db", [record, osv("PYSEC-6", versions=["1.0"])])
    with pytest.raises(AdvisoryImportError) as caught:
        import_advisories(data, state_root, now=NOW)
    assert "1 of the records" in caught.value.message
    assert str(data / "PYSEC-5.json") in caught.value.message
    assert expected in caught.value.message
    assert caught.value.hint is not None and "--skip-invalid" in caught.value.hint


def test_skip_invalid_imports_the_rest_and_lists_what_it_skipped(
    tmp_path: Path, state_root: Path
) -> None:
    broken = osv("PYSEC-5", versions=["1.0"])
    broken.pop("id")
    data = write_records(tmp_path / "db", [osv("PYSEC-6", versions=["1.0"])])
    (data / "broken.json").write_text(json.dumps(broken))
    summary = import_advisories(data, state_root, skip_invalid=True, now=NOW)
    assert summary.records == 1
    assert len(summary.invalid) == 1 and "broken.json: id: is missing" in summary.invalid[0]


def test_a_failed_import_keeps_the_previous_index(tmp_path: Path, state_root: Path) -> None:
    good = write_records(tmp_path / "good", [osv("PYSEC-1", versions=["1.0"])])
    import_advisories(good, state_root, now=NOW)
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "x.json").write_text("[not json")
    with pytest.raises(AdvisoryImportError):
        import_advisories(bad, state_root, now=NOW)
    assert index_status(state_root).records == 1
    assert [p.name for p in index_path(state_root).parent.iterdir()] == ["index.sqlite"]


def test_an_empty_or_missing_source_is_refused(tmp_path: Path, state_root: Path) -> None:
    with pytest.raises(AdvisoryImportError, match="does not exist"):
        import_advisories(tmp_path / "nowhere", state_root)
    (tmp_path / "empty").mkdir()
    with pytest.raises(AdvisoryImportError, match="holds no OSV advisory"):
        import_advisories(tmp_path / "empty", state_root)
    (tmp_path / "file.txt").write_text("hello")
    with pytest.raises(AdvisoryImportError, match="neither a folder nor a zip"):
        import_advisories(tmp_path / "file.txt", state_root)


def test_the_newer_of_two_copies_of_a_record_wins(tmp_path: Path, state_root: Path) -> None:
    write_records(
        tmp_path / "db" / "old",
        [osv("PYSEC-1", versions=["1.0"], modified=NOW - timedelta(days=9))],
    )
    write_records(
        tmp_path / "db" / "new",
        [osv("PYSEC-1", versions=["2.0"], modified=NOW - timedelta(days=1))],
    )
    summary = import_advisories(tmp_path / "db", state_root, now=NOW)
    assert (summary.records, summary.duplicates) == (1, 1)
    found = LocalIndex(state_root).advisories([PackageVersion("PyPI", "demo", "2.0")])
    [advisory] = next(iter(found.values()))
    assert is_affected(advisory, "PyPI", "demo", "2.0")
    assert not is_affected(advisory, "PyPI", "demo", "1.0")


def test_a_missing_or_damaged_index_says_how_to_fix_it(state_root: Path) -> None:
    with pytest.raises(AdvisorySourceError) as caught:
        LocalIndex(state_root).freshness()
    assert "no local advisory data" in caught.value.message
    assert caught.value.hint is not None and "shipyard advisories import" in caught.value.hint
    index_path(state_root).parent.mkdir(parents=True)
    index_path(state_root).write_bytes(b"this is not sqlite at all" * 100)
    with pytest.raises(AdvisorySourceError, match="is damaged"):
        index_status(state_root)


def test_a_future_modified_time_does_not_make_the_data_fresh_forever(
    tmp_path: Path, state_root: Path
) -> None:
    records = [
        osv("PYSEC-1", versions=["1.0"], modified=NOW - timedelta(days=3)),
        osv("PYSEC-2", versions=["2.0"], modified=NOW + timedelta(days=3650)),
    ]
    summary = import_advisories(write_records(tmp_path / "db", records), state_root, now=NOW)
    assert summary.newest_modified == NOW
    assert summary.future_modified == ("PYSEC-2",)
    assert summary.as_json()["future_modified"] == ["PYSEC-2"]
    status = index_status(state_root)
    assert status.newest_modified == NOW
    assert status.freshness.age(NOW + timedelta(days=40)) == 40 * 86_400


def test_freshness_never_trusts_a_time_after_the_data_was_fetched() -> None:
    # An index written before imports clamped future times still ages from its import.
    fetched = NOW - timedelta(days=31)
    freshness = Freshness(NOW + timedelta(days=3650), fetched, 1)
    assert freshness.age(NOW) == 31 * 86_400


def test_an_oversized_record_file_is_refused_and_the_index_kept(
    tmp_path: Path, state_root: Path
) -> None:
    good = write_records(tmp_path / "good", [osv("PYSEC-1", versions=["1.0"])])
    import_advisories(good, state_root, now=NOW)
    huge = b'{"id": "PYSEC-9", "pad": "' + b" " * MAX_RECORD_BYTES + b'"}'
    archive = tmp_path / "osv.zip"
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED) as zipped:
        zipped.writestr("PYSEC-2.json", json.dumps(osv("PYSEC-2", versions=["1.0"])))
        zipped.writestr("big/PYSEC-9.json", huge)
    with pytest.raises(AdvisoryImportError) as caught:
        import_advisories(archive, state_root, now=NOW)
    assert f"{archive}:big/PYSEC-9.json" in caught.value.message
    assert "larger than" in caught.value.message and "nothing was imported" in caught.value.message
    folder = write_records(tmp_path / "folder", [osv("PYSEC-3", versions=["1.0"])])
    with (folder / "PYSEC-8.json").open("wb") as sparse:
        sparse.truncate(MAX_RECORD_BYTES + 1)
    with pytest.raises(AdvisoryImportError, match=r"PYSEC-8\.json.*larger than"):
        import_advisories(folder, state_root, now=NOW)
    assert index_status(state_root).records == 1


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("PYSEC-1.json", "[" * 200_000 + "]" * 200_000),
        ("PYSEC-1.yaml", "a: " + "[" * 200_000 + "]" * 200_000),
        ("PYSEC-1.yaml", "a:\n" + "".join(" " * n + "- \n" for n in range(0, 1200, 2))),
    ],
)
def test_a_record_nested_absurdly_deep_is_named_and_nothing_is_imported(
    tmp_path: Path, state_root: Path, name: str, text: str
) -> None:
    data = tmp_path / "db"
    data.mkdir()
    (data / name).write_text(text)
    with pytest.raises(AdvisoryImportError) as caught:
        import_advisories(data, state_root, now=NOW)
    assert str(data / name) in caught.value.message
    assert not index_path(state_root).exists()
