"""The blob store against real files, real processes and real (small) filesystems."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
import subprocess
import sys
import textwrap
import time
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import pytest

from shipyard.core.blobs import (
    CHUNK_SIZE,
    BlobCorrupted,
    BlobError,
    BlobNotFound,
    BlobStore,
    Digest,
    DiskFull,
    InvalidDigest,
)
from shipyard.core.errors import HostError, NotFoundError, UserError
from shipyard.core.state import StateDir

MIB = 1024 * 1024
PATIENCE = 60.0  # seconds; only ever an upper bound for polling, never an assertion
HELLO = "sha256:2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"


class GeneratedStream:
    """A source of ``total`` pseudo-random bytes made chunk by chunk, never held at once."""

    def __init__(self, total: int, seed: bytes = b"seed") -> None:
        self.remaining = total
        self.block = hashlib.sha256(seed).digest()
        self.hasher = hashlib.sha256()
        self.requests: list[int] = []

    def read(self, size: int, /) -> bytes:
        """Up to ``size`` fresh bytes (at most 64 KiB), remembering what was asked for."""
        self.requests.append(size)
        count = min(size if size >= 0 else self.remaining, self.remaining, 64 * 1024)
        chunk = (self.block * (count // len(self.block) + 1))[:count]
        self.block = hashlib.sha256(self.block).digest()
        self.remaining -= count
        self.hasher.update(chunk)
        return chunk

    @property
    def digest(self) -> Digest:
        """The digest of everything handed out so far."""
        return Digest(self.hasher.hexdigest())


class FailingStream:
    """A source that yields a few chunks and then fails the way a broken pipe does."""

    def __init__(self, error: BaseException) -> None:
        self.calls = 0
        self.error = error

    def read(self, size: int, /) -> bytes:
        """Two chunks, then the error."""
        self.calls += 1
        if self.calls > 2:
            raise self.error
        return b"x" * min(size, 4096)


class FileLike:
    """A minimal readable over bytes, as a pipe or an HTTP response would be."""

    def __init__(self, data: bytes) -> None:
        self.data = memoryview(data)

    def read(self, size: int, /) -> bytes:
        """The next ``size`` bytes."""
        chunk, self.data = self.data[:size], self.data[size:]
        return bytes(chunk)


@pytest.fixture
def store(tmp_path: Path) -> BlobStore:
    """An empty store in a folder that does not exist yet."""
    return BlobStore(tmp_path / "blobs")


def blob_files(store: BlobStore) -> list[Path]:
    """Every file under the store's content tree."""
    return sorted(p for p in (store.root / "sha256").rglob("*") if p.is_file())


def temp_files(store: BlobStore) -> list[Path]:
    """Every leftover temporary file of the store."""
    folder = store.root / "tmp"
    return sorted(folder.iterdir()) if folder.exists() else []


def blob_path(store: BlobStore, digest: Digest) -> Path:
    """Where the layout puts a blob: ``sha256/<first two hex>/<all 64 hex>``."""
    return store.root / "sha256" / digest.hex[:2] / digest.hex


def damage(path: Path, *, flip_at: int | None = None, truncate_to: int | None = None) -> None:
    """Corrupt a stored (read-only) blob file in place, as a failing disk would."""
    path.chmod(0o644)
    with path.open("r+b") as handle:
        if flip_at is not None:
            handle.seek(flip_at)
            byte = handle.read(1)
            handle.seek(flip_at)
            handle.write(bytes([byte[0] ^ 0xFF]))
        if truncate_to is not None:
            handle.truncate(truncate_to)
    path.chmod(0o444)


def run_python(source: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Run a Python script in a fresh interpreter that imports this checkout's shipyard."""
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(source), *args],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


# --- round trips ----------------------------------------------------------------------------


def test_bytes_round_trip_under_the_sha256_layout(store: BlobStore) -> None:
    info = store.put_bytes(b"hello")
    assert str(info.digest) == HELLO
    assert info.size == 5
    assert blob_path(store, info.digest).read_bytes() == b"hello"
    assert store.read_bytes(HELLO) == b"hello"
    assert store.read_bytes(info.digest) == b"hello"
    assert store.exists(HELLO)
    assert store.size(HELLO) == 5
    assert temp_files(store) == []


def test_empty_content_is_a_blob_too(store: BlobStore) -> None:
    info = store.put_bytes(b"")
    assert info.size == 0
    assert store.read_bytes(info.digest) == b""
    assert store.verify(info.digest).size == 0


def test_file_round_trip_leaves_the_source_untouched(store: BlobStore, tmp_path: Path) -> None:
    content = os.urandom(3 * MIB + 17)
    source = tmp_path / "dist" / "app.whl"
    source.parent.mkdir()
    source.write_bytes(content)
    info = store.put_file(source)
    assert info.digest == Digest.of(content)
    assert info.size == len(content)
    assert source.read_bytes() == content
    dest = tmp_path / "restored" / "deep" / "app.whl"
    assert store.copy_to(info.digest, dest) == info
    assert dest.read_bytes() == content
    assert sorted(p.name for p in dest.parent.iterdir()) == ["app.whl"]


def test_a_50_mb_stream_goes_through_in_bounded_memory(store: BlobStore, tmp_path: Path) -> None:
    total = 50 * MIB
    stream = GeneratedStream(total)
    tracemalloc.start()
    try:
        info = store.put_stream(stream)
        _, stored_peak = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        dest = tmp_path / "out.bin"
        store.copy_to(info.digest, dest)
        _, copied_peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert info == store.verify(stream.digest)
    assert info.size == total
    # The store pulls bounded chunks and never asks for "everything" (-1 or a huge size).
    assert all(0 < size <= CHUNK_SIZE for size in stream.requests)
    assert stored_peak < 16 * MIB
    assert copied_peak < 16 * MIB
    assert dest.stat().st_size == total
    hasher = hashlib.sha256()
    with store.open(info.digest) as reader:
        while chunk := reader.read(CHUNK_SIZE):
            hasher.update(chunk)
    assert hasher.hexdigest() == info.digest.hex


# --- identical content ----------------------------------------------------------------------


def test_identical_content_is_stored_once_and_not_rewritten(
    store: BlobStore, tmp_path: Path
) -> None:
    content = b"artifact " * 10_000
    first = store.put_bytes(content)
    inode = blob_path(store, first.digest).stat().st_ino
    source = tmp_path / "same.txt"
    source.write_bytes(content)
    again = [
        store.put_bytes(content),
        store.put_file(source),
        store.put_stream(FileLike(content)),
    ]
    assert all(info == first for info in again)
    assert blob_files(store) == [blob_path(store, first.digest)]
    assert blob_path(store, first.digest).stat().st_ino == inode
    assert temp_files(store) == []


WRITER = """
import hashlib, io, sys, time
from pathlib import Path
from shipyard.core.blobs import BlobStore

root, ready, go = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
content = hashlib.sha256(b"shared").digest() * (8 * 1024 * 1024 // 32)
store = BlobStore(root)
ready.write_text("ready")
deadline = time.monotonic() + 60
while not go.exists() and time.monotonic() < deadline:
    time.sleep(0.001)
digests = set()
for _ in range(3):
    digests.add(str(store.put_bytes(content).digest))
    digests.add(str(store.put_stream(io.BytesIO(content)).digest))
print(" ".join(sorted(digests)))
"""


def test_four_processes_writing_the_same_content_store_one_blob(
    store: BlobStore, tmp_path: Path
) -> None:
    go = tmp_path / "go"
    readies = [tmp_path / f"ready-{n}" for n in range(4)]
    writers = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, str(store.root), str(ready), str(go)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for ready in readies
    ]
    try:
        deadline = time.monotonic() + PATIENCE
        while not all(r.exists() for r in readies) and time.monotonic() < deadline:
            time.sleep(0.01)
        go.write_text("go")
        outputs = [writer.communicate(timeout=300) for writer in writers]
    finally:
        for writer in writers:
            if writer.poll() is None:
                writer.kill()
                writer.wait()
    assert [writer.returncode for writer in writers] == [0, 0, 0, 0], outputs
    expected = Digest.of(hashlib.sha256(b"shared").digest() * (8 * MIB // 32))
    assert {stdout.strip() for stdout, _ in outputs} == {str(expected)}
    assert blob_files(store) == [blob_path(store, expected)]
    assert temp_files(store) == []
    assert store.verify(expected).size == 8 * MIB


# --- verification on read -------------------------------------------------------------------


def test_a_flipped_byte_is_detected_quarantined_and_never_served(store: BlobStore) -> None:
    content = b"release bundle " * 1000
    info = store.put_bytes(content)
    path = blob_path(store, info.digest)
    damage(path, flip_at=100)

    with pytest.raises(BlobCorrupted) as caught:
        store.read_bytes(info.digest)
    error = caught.value
    assert isinstance(error, BlobError)
    assert isinstance(error, HostError)
    assert error.digest == info.digest
    assert error.path == path
    assert str(info.digest) in str(error)
    assert str(path) in str(error)
    assert error.quarantined is not None
    assert error.quarantined.parent == store.root / "corrupt"
    assert "will not be served again" in str(error)
    assert error.quarantined.read_bytes() != content

    assert not store.exists(info.digest)
    with pytest.raises(BlobNotFound):
        store.read_bytes(info.digest)
    assert list(store.iter_digests()) == []

    assert store.put_bytes(content) == info
    assert store.read_bytes(info.digest) == content


def test_a_streaming_reader_fails_at_the_end_and_keeps_failing(store: BlobStore) -> None:
    content = os.urandom(3 * MIB)
    info = store.put_bytes(content)
    damage(blob_path(store, info.digest), flip_at=len(content) - 1)
    with store.open(info.digest) as reader:
        assert reader.read(1024) == content[:1024]  # not yet known to be wrong
        with pytest.raises(BlobCorrupted):
            while reader.read(CHUNK_SIZE):
                pass
        with pytest.raises(BlobCorrupted):
            reader.read(1)
    assert not store.exists(info.digest)


def test_copy_to_never_leaves_a_corrupt_destination(store: BlobStore, tmp_path: Path) -> None:
    content = os.urandom(3 * MIB)
    info = store.put_bytes(content)
    damage(blob_path(store, info.digest), flip_at=len(content) - 10)
    target = tmp_path / "workspace"
    target.mkdir()
    existing = target / "app.tar"
    existing.write_bytes(b"the previous, sound file")

    with pytest.raises(BlobCorrupted):
        store.copy_to(info.digest, existing)
    assert existing.read_bytes() == b"the previous, sound file"
    assert [p.name for p in target.iterdir()] == ["app.tar"]

    store.put_bytes(content)
    damage(blob_path(store, info.digest), truncate_to=1000)
    with pytest.raises(BlobCorrupted):
        store.copy_to(info.digest, target / "new.tar")
    assert [p.name for p in target.iterdir()] == ["app.tar"]


def test_a_truncated_blob_is_detected(store: BlobStore) -> None:
    content = b"0123456789" * 5000
    info = store.put_bytes(content)
    damage(blob_path(store, info.digest), truncate_to=len(content) // 2)
    with pytest.raises(BlobCorrupted) as caught:
        store.verify(info.digest)
    assert f"{len(content) // 2} bytes" in str(caught.value)
    assert not store.exists(info.digest)


def test_putting_again_replaces_a_stored_blob_of_the_wrong_size(
    store: BlobStore, tmp_path: Path
) -> None:
    content = b"cache output " * 4000
    info = store.put_bytes(content)
    damage(blob_path(store, info.digest), truncate_to=10)
    assert store.size(info.digest) == 10
    assert store.put_bytes(content) == info
    assert store.read_bytes(info.digest) == content

    damage(blob_path(store, info.digest), truncate_to=10)
    source = tmp_path / "output.bin"
    source.write_bytes(content)
    assert store.put_file(source) == info
    assert store.read_bytes(info.digest) == content
    assert temp_files(store) == []


# --- a full disk ----------------------------------------------------------------------------

FILE_SIZE_LIMIT = """
import io, json, resource, signal, sys
from pathlib import Path
from shipyard.core.blobs import BlobStore, DiskFull

root, source = Path(sys.argv[1]), Path(sys.argv[2])
store = BlobStore(root)
kept = store.put_bytes(b"kept before the disk filled up" * 100)
big = bytes(range(256)) * (4 * 1024 * 1024 // 256)
source.write_bytes(big)
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (1024 * 1024, resource.RLIM_INFINITY))
results = {"kept": str(kept.digest)}
for kind, put in [
    ("bytes", lambda: store.put_bytes(big)),
    ("file", lambda: store.put_file(source)),
    ("stream", lambda: store.put_stream(io.BytesIO(big))),
]:
    try:
        put()
    except DiskFull as exc:
        results[kind] = {"message": exc.message, "hint": exc.hint, "location": str(exc.location)}
    else:
        results[kind] = None
print(json.dumps(results))
"""


def test_a_file_size_limit_fails_the_write_as_disk_full(store: BlobStore, tmp_path: Path) -> None:
    result = run_python(FILE_SIZE_LIMIT, str(store.root), str(tmp_path / "big.bin"))
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    for kind in ("bytes", "file", "stream"):
        failure = report[kind]
        assert failure is not None, f"put_{kind} did not fail"
        assert failure["message"].startswith(
            f"no space left on the device holding {store.root} while storing a blob of "
        )
        assert "SHIPYARD_BLOBS" in failure["hint"]
        assert failure["location"] == str(store.root)
    assert f"of {4 * MIB} bytes" in report["bytes"]["message"]
    assert f"of {4 * MIB} bytes" in report["file"]["message"]
    assert "of at least" in report["stream"]["message"]
    assert temp_files(store) == []
    kept = Digest.parse(report["kept"])
    assert list(store.iter_digests()) == [kept]
    assert store.verify(kept).size > 0


@pytest.fixture
def small_filesystem(tmp_path: Path) -> Iterator[Path]:
    """A freshly mounted 1 MiB tmpfs; the test is skipped where mounting is not permitted."""
    mountpoint = tmp_path / "small"
    mountpoint.mkdir()
    if shutil.which("mount") is None:
        pytest.skip("no mount command")
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mountpoint)],
        capture_output=True,
        text=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield mountpoint
    finally:
        subprocess.run(["umount", str(mountpoint)], check=True)


def test_a_full_filesystem_fails_cleanly_and_the_store_stays_intact(
    small_filesystem: Path, tmp_path: Path
) -> None:
    store = BlobStore(small_filesystem / "blobs")
    kept = store.put_bytes(b"small and precious" * 1000)
    big = os.urandom(2 * MIB)

    with pytest.raises(DiskFull) as caught:
        store.put_bytes(big)
    assert str(caught.value).startswith(
        f"no space left on the device holding {store.root} while storing a blob of {2 * MIB} bytes"
    )
    with pytest.raises(DiskFull):
        store.put_stream(FileLike(big))
    assert temp_files(store) == []
    assert list(store.iter_digests()) == [kept.digest]
    assert store.verify(kept.digest) == kept

    # The space a failed write took is given back: small content still fits.
    later = store.put_bytes(b"still works")
    assert store.read_bytes(later.digest) == b"still works"

    # Copying out onto a full device leaves no partial destination either.
    elsewhere = BlobStore(tmp_path / "large")
    info = elsewhere.put_bytes(big)
    with pytest.raises(DiskFull) as copying:
        elsewhere.copy_to(info.digest, small_filesystem / "out" / "big.bin")
    assert "the destination was not changed" in str(copying.value)
    assert list((small_filesystem / "out").iterdir()) == []


# --- bad input ------------------------------------------------------------------------------

HEX = "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("", "does not start with 'sha256:'"),
        ("sha256:", "0 characters after 'sha256:' instead of 64"),
        ("sha256:abc", "3 characters after 'sha256:' instead of 64"),
        (f"sha256:{HEX}0", "65 characters"),
        (f"md5:{HEX}", "does not start with 'sha256:'"),
        (f" sha256:{HEX}", "does not start with 'sha256:'"),
        (f"sha256:{HEX[:-1]}g", "not hex digits"),
        (f"sha256:{HEX.upper()}", "not lowercase"),
        (HEX, "does not start with 'sha256:'"),
    ],
)
def test_invalid_digests_are_rejected_naming_the_value(text: str, says: str) -> None:
    with pytest.raises(InvalidDigest) as caught:
        Digest.parse(text)
    error = caught.value
    assert isinstance(error, UserError)
    assert isinstance(error, BlobError)
    assert repr(text) in error.message
    assert says in error.message
    assert error.hint


def test_hints_show_the_digest_written_correctly() -> None:
    with pytest.raises(InvalidDigest) as bare:
        Digest.parse(HEX)
    assert f"'sha256:{HEX}'" in str(bare.value.hint)
    with pytest.raises(InvalidDigest) as upper:
        Digest.parse(f"sha256:{HEX.upper()}")
    assert f"'sha256:{HEX}'" in str(upper.value.hint)


def test_digests_are_checked_everywhere(store: BlobStore) -> None:
    with pytest.raises(InvalidDigest):
        Digest("not-hex")
    for call in (store.read_bytes, store.exists, store.size, store.delete, store.verify):
        with pytest.raises(InvalidDigest):
            call("sha256:../../etc/passwd")
    huge = "sha256:" + "z" * 10_000
    with pytest.raises(InvalidDigest) as caught:
        Digest.parse(huge)
    assert len(caught.value.message) < 300


def test_digest_text_round_trips_and_sorts() -> None:
    digest = Digest.parse(HELLO)
    assert str(digest) == HELLO
    assert Digest.parse(str(digest)) == digest
    assert Digest.of(b"hello") == digest
    assert sorted([Digest("f" * 64), digest, Digest("0" * 64)]) == [
        Digest("0" * 64),
        digest,
        Digest("f" * 64),
    ]


def test_a_missing_blob_is_not_found(store: BlobStore, tmp_path: Path) -> None:
    missing = Digest.of(b"never stored")
    assert not store.exists(missing)
    assert store.delete(missing) is False
    for call in (store.read_bytes, store.size, store.verify, store.open):
        with pytest.raises(BlobNotFound) as caught:
            call(missing)
        assert isinstance(caught.value, NotFoundError)
        assert caught.value.digest == missing
        assert str(missing) in str(caught.value)
    with pytest.raises(BlobNotFound):
        store.copy_to(missing, tmp_path / "dest" / "file")
    assert not (tmp_path / "dest").exists()


def test_an_unreadable_source_is_a_clear_error_and_stores_nothing(
    store: BlobStore, tmp_path: Path
) -> None:
    missing = tmp_path / "dist" / "missing.whl"
    with pytest.raises(BlobError) as caught:
        store.put_file(missing)
    assert str(missing) in str(caught.value)

    with pytest.raises(BlobError) as broken:
        store.put_stream(FailingStream(BrokenPipeError(32, "Broken pipe")))
    assert "cannot read the stream" in str(broken.value)

    with pytest.raises(RuntimeError):
        store.put_stream(FailingStream(RuntimeError("producer crashed")))

    assert temp_files(store) == []
    assert list(store.iter_digests()) == []


# --- housekeeping ---------------------------------------------------------------------------


def test_blobs_are_read_only_and_folders_owner_only(store: BlobStore) -> None:
    info = store.put_bytes(b"private")
    path = blob_path(store, info.digest)
    assert stat.S_IMODE(path.stat().st_mode) == 0o444
    for folder in (store.root, store.root / "sha256", path.parent, store.root / "tmp"):
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700, folder
    damage(path, flip_at=0)
    with pytest.raises(BlobCorrupted):
        store.verify(info.digest)
    assert stat.S_IMODE((store.root / "corrupt").stat().st_mode) == 0o700


def test_copy_to_sets_the_requested_mode_or_follows_the_umask(
    store: BlobStore, tmp_path: Path
) -> None:
    info = store.put_bytes(b"#!/bin/sh\necho hi\n")
    script = tmp_path / "bin" / "run.sh"
    store.copy_to(info.digest, script, mode=0o750)
    assert stat.S_IMODE(script.stat().st_mode) == 0o750
    reference = tmp_path / "bin" / "reference"
    reference.write_bytes(b"")
    plain = tmp_path / "bin" / "plain.txt"
    store.copy_to(info.digest, plain)
    assert stat.S_IMODE(plain.stat().st_mode) == stat.S_IMODE(reference.stat().st_mode)
    assert plain.read_bytes() == b"#!/bin/sh\necho hi\n"


def test_listing_sizes_and_deleting_for_garbage_collection(store: BlobStore) -> None:
    contents = [b"a" * 10, b"b" * 200, b"c" * 3000]
    infos = [store.put_bytes(content) for content in contents]
    (store.root / "sha256" / "zz").mkdir()
    (store.root / "sha256" / infos[0].digest.hex[:2] / "README").write_text("stray")
    (store.root / "tmp" / "half-written.part").write_bytes(b"x" * 5000)
    (store.root / "corrupt").mkdir()
    (store.root / "corrupt" / f"{infos[1].digest.hex}.bad").write_bytes(b"x" * 7000)

    assert list(store.iter_digests()) == sorted(info.digest for info in infos)
    assert store.total_size() == 3210

    assert store.delete(infos[1].digest) is True
    assert not store.exists(infos[1].digest)
    assert list(store.iter_digests()) == sorted([infos[0].digest, infos[2].digest])
    assert store.total_size() == 3010


def test_an_empty_or_absent_store_lists_nothing(store: BlobStore) -> None:
    assert list(store.iter_digests()) == []
    assert store.total_size() == 0
    assert not store.root.exists()


def test_stale_temporary_files_are_swept_by_the_next_put(store: BlobStore) -> None:
    store.put_bytes(b"first")
    stale = store.root / "tmp" / "crashed-writer.part"
    fresh = store.root / "tmp" / "busy-writer.part"
    stale.write_bytes(b"left behind")
    fresh.write_bytes(b"being written")
    two_hours_ago = time.time() - 2 * 3600
    os.utime(stale, (two_hours_ago, two_hours_ago))
    store.put_bytes(b"second")
    assert not stale.exists()
    assert fresh.exists()


def test_the_state_directory_store_honours_shipyard_blobs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    state = StateDir(root=tmp_path / ".shipyard", repo_root=None, git_common_dir=None)
    assert BlobStore.for_state(state).root == tmp_path / ".shipyard" / "blobs"
    monkeypatch.setenv("SHIPYARD_BLOBS", str(tmp_path / "shared"))
    store = BlobStore.for_state(state)
    assert store.root == tmp_path / "shared"
    info = store.put_bytes(b"shared storage")
    assert blob_path(store, info.digest).exists()
