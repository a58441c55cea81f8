"""The content-addressed blob store: job artifacts, cache outputs and release bundles by sha256.

Writes are atomic (temporary file, fsync, rename) and every read verifies the digest, so a
reader never gets bytes that do not match; a failed write leaves the store as it was.
"""

from __future__ import annotations

import errno
import hashlib
import io
import os
import re
import stat
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, Protocol

from shipyard.core.errors import HostError, NotFoundError, UserError

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer

    from shipyard.core.state import StateDir

__all__ = [
    "BlobCorrupted",
    "BlobError",
    "BlobInfo",
    "BlobNotFound",
    "BlobStore",
    "ByteSource",
    "Digest",
    "DiskFull",
    "InvalidDigest",
]

ALGORITHM = "sha256"
"""The one hash algorithm of the store; it is also the prefix of every digest string."""

CHUNK_SIZE = 1024 * 1024
"""How many bytes the store reads or writes at a time; memory use is bounded by this."""

STALE_TEMP_SECONDS = 3600
"""Temporary files untouched for this long belong to a crashed writer and are removed."""

_HEX = re.compile(r"[0-9a-f]{64}")
_FULL_DEVICE = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})
_BLOB_MODE = 0o444
_DIR_MODE = 0o700


class BlobError(HostError):
    """The blob store cannot store or serve a blob."""


class InvalidDigest(BlobError, UserError):
    """A string is not a ``sha256:<64 lowercase hex digits>`` digest."""


class BlobNotFound(BlobError, NotFoundError):
    """No blob with the requested digest is in the store."""

    def __init__(self, message: str, *, digest: Digest, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.digest = digest


class BlobCorrupted(BlobError):
    """A stored blob does not match its digest; it has been moved aside and is not served."""

    def __init__(
        self,
        message: str,
        *,
        digest: Digest,
        path: Path,
        quarantined: Path | None,
        hint: str | None = None,
    ) -> None:
        super().__init__(message, hint=hint)
        self.digest = digest
        self.path = path
        self.quarantined = quarantined


class DiskFull(BlobError):
    """The device ran out of space (or quota, or file-size limit) while writing a blob."""

    def __init__(self, message: str, *, location: Path, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.location = location


@dataclass(frozen=True, order=True)
class Digest:
    """The sha256 of a blob's content; written everywhere as ``sha256:<64 hex digits>``."""

    hex: str

    def __post_init__(self) -> None:
        if not isinstance(self.hex, str) or not _HEX.fullmatch(self.hex):
            raise InvalidDigest(
                f"{_shorten(self.hex)} is not a sha256 digest: expected 64 lowercase hex digits",
                hint=f"write a digest as '{ALGORITHM}:' followed by 64 lowercase hex digits",
            )

    @classmethod
    def parse(cls, text: str) -> Digest:
        """Read the ``sha256:<hex>`` form; raise ``InvalidDigest`` naming the bad value."""
        prefix = f"{ALGORITHM}:"
        usage = f"write a digest as '{prefix}' followed by 64 lowercase hex digits"
        if not isinstance(text, str) or not text.startswith(prefix):
            if isinstance(text, str) and _HEX.fullmatch(text.lower()):
                usage = f"add the '{prefix}' prefix: '{prefix}{text.lower()}'"
            raise InvalidDigest(
                f"{_shorten(text)} is not a blob digest: it does not start with '{prefix}'",
                hint=usage,
            )
        body = text[len(prefix) :]
        if _HEX.fullmatch(body):
            return cls(body)
        if len(body) != 64:
            problem = f"it has {len(body)} characters after '{prefix}' instead of 64"
        elif not re.fullmatch(r"[0-9a-fA-F]*", body):
            problem = f"it has characters after '{prefix}' that are not hex digits"
        else:
            problem = "its hex digits are not lowercase"
            usage = f"write it in lowercase: '{prefix}{body.lower()}'"
        raise InvalidDigest(f"{_shorten(text)} is not a blob digest: {problem}", hint=usage)

    @classmethod
    def of(cls, data: bytes) -> Digest:
        """The digest of ``data``."""
        return cls(hashlib.sha256(data).hexdigest())

    def __str__(self) -> str:
        return f"{ALGORITHM}:{self.hex}"


@dataclass(frozen=True)
class BlobInfo:
    """A stored blob: its digest and its size in bytes."""

    digest: Digest
    size: int


class ByteSource(Protocol):
    """Anything with a ``read(size)`` returning bytes, and ``b""`` at the end."""

    def read(self, size: int, /) -> bytes:
        """At most ``size`` bytes; ``b""`` once the source is exhausted."""
        ...


@dataclass(frozen=True)
class BlobStore:
    """Blobs as read-only files under ``root/sha256/<2 hex>/<64 hex>``, written atomically."""

    root: Path

    @classmethod
    def for_state(cls, state: StateDir) -> BlobStore:
        """The store of a state directory (``SHIPYARD_BLOBS`` overrides its location)."""
        return cls(state.blobs)

    # --- writing ---------------------------------------------------------------------------

    def put_bytes(self, data: bytes) -> BlobInfo:
        """Store ``data``; identical content is stored once."""
        digest = Digest.of(data)
        if self._stored_size(self._path(digest)) == len(data):
            return BlobInfo(digest, len(data))
        self._prepare()
        return self._ingest(io.BytesIO(data), origin="bytes in memory", size=len(data))

    def put_file(self, path: Path) -> BlobInfo:
        """Store a file's content, streaming it in chunks; the file is left untouched."""
        self._prepare()
        try:
            source = path.open("rb")
        except OSError as exc:
            raise BlobError(
                f"cannot read {path} to store it as a blob: {exc.strerror}",
                hint="check that the file exists and is readable",
            ) from exc
        with source:
            size = os.fstat(source.fileno()).st_size
            return self._ingest(source, origin=str(path), size=size)

    def put_stream(self, source: ByteSource) -> BlobInfo:
        """Store everything ``source`` yields until it returns ``b""``, in bounded memory."""
        self._prepare()
        return self._ingest(source, origin="the stream", size=None)

    # --- reading ---------------------------------------------------------------------------

    def open(self, digest: Digest | str) -> BinaryIO:
        """A reader of a blob that raises ``BlobCorrupted`` at the end if the content is wrong.

        Bytes read before the end are not yet verified: a consumer must discard what it read
        if the end raises. A reader closed before the end has verified nothing.
        """
        digest = _as_digest(digest)
        path = self._path(digest)
        try:
            handle = io.FileIO(path, "r")
        except FileNotFoundError:
            raise self._not_found(digest) from None
        except OSError as exc:
            raise BlobError(
                f"cannot open blob {digest} at {path}: {exc.strerror}",
                hint="check the permissions of the blob store",
            ) from exc
        return io.BufferedReader(_VerifyingReader(self, digest, handle), CHUNK_SIZE)

    def read_bytes(self, digest: Digest | str) -> bytes:
        """A whole blob in memory, verified; for small blobs only."""
        with self.open(digest) as reader:
            return reader.read()

    def copy_to(self, digest: Digest | str, dest: Path, *, mode: int | None = None) -> BlobInfo:
        """Write a blob to ``dest``, replacing it atomically only once the content verified.

        ``mode`` sets the permissions of ``dest``; by default they follow the umask.
        Missing parent folders are created.
        """
        digest = _as_digest(digest)
        with self.open(digest) as reader:
            folder = dest.parent
            temp = folder / f".{dest.name}.{uuid.uuid4().hex}.part"
            written = 0
            try:
                folder.mkdir(parents=True, exist_ok=True)
                fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666)
            except OSError as exc:
                what = f"copying blob {digest} to {dest}"
                raise _write_failure(exc, folder, what, into_store=False) from exc
            try:
                try:
                    while chunk := reader.read(CHUNK_SIZE):
                        _write_all(fd, chunk)
                        written += len(chunk)
                    os.fsync(fd)
                    if mode is not None:
                        os.fchmod(fd, mode)
                finally:
                    os.close(fd)
                temp.replace(dest)
                _fsync_dir(folder)
            except OSError as exc:
                _remove(temp)
                what = f"copying blob {digest} ({written} bytes written) to {dest}"
                raise _write_failure(exc, folder, what, into_store=False) from exc
            except BaseException:  # BlobCorrupted above all: nothing may land at dest
                _remove(temp)
                raise
        return BlobInfo(digest, written)

    def verify(self, digest: Digest | str) -> BlobInfo:
        """Read a blob through to the end; ``BlobCorrupted`` (and quarantine) if it is wrong."""
        digest = _as_digest(digest)
        size = 0
        with self.open(digest) as reader:
            while chunk := reader.read(CHUNK_SIZE):
                size += len(chunk)
        return BlobInfo(digest, size)

    # --- inspecting and removing -----------------------------------------------------------

    def exists(self, digest: Digest | str) -> bool:
        """Whether a blob is stored (without reading it)."""
        return self._stored_size(self._path(_as_digest(digest))) is not None

    def size(self, digest: Digest | str) -> int:
        """The stored size of a blob in bytes (without reading it)."""
        digest = _as_digest(digest)
        size = self._stored_size(self._path(digest))
        if size is None:
            raise self._not_found(digest)
        return size

    def delete(self, digest: Digest | str) -> bool:
        """Remove a blob; return whether it was there."""
        digest = _as_digest(digest)
        path = self._path(digest)
        try:
            path.unlink()
        except FileNotFoundError:
            return False
        except OSError as exc:
            raise BlobError(
                f"cannot delete blob {digest} at {path}: {exc.strerror}",
                hint="check the permissions of the blob store",
            ) from exc
        return True

    def iter_digests(self) -> Iterator[Digest]:
        """Every stored blob's digest, in sorted order; stray files are skipped."""
        for digest, _ in self._iter_blobs():
            yield digest

    def total_size(self) -> int:
        """The bytes taken by stored blobs (temporary and quarantined files excluded)."""
        total = 0
        for _, entry in self._iter_blobs():
            try:
                total += entry.stat(follow_symlinks=False).st_size
            except FileNotFoundError:
                continue  # deleted while we counted
        return total

    # --- internals -------------------------------------------------------------------------

    def _iter_blobs(self) -> Iterator[tuple[Digest, os.DirEntry[str]]]:
        for fan_out in _sorted_entries(self.root / ALGORITHM):
            if not re.fullmatch(r"[0-9a-f]{2}", fan_out.name):
                continue
            if not fan_out.is_dir(follow_symlinks=False):
                continue
            for entry in _sorted_entries(Path(fan_out.path)):
                name = entry.name
                if not (_HEX.fullmatch(name) and name.startswith(fan_out.name)):
                    continue
                if entry.is_file(follow_symlinks=False):
                    yield Digest(name), entry

    def _path(self, digest: Digest) -> Path:
        return self.root / ALGORITHM / digest.hex[:2] / digest.hex

    @property
    def _temp_dir(self) -> Path:
        return self.root / "tmp"

    @property
    def _corrupt_dir(self) -> Path:
        return self.root / "corrupt"

    def _stored_size(self, path: Path) -> int | None:
        try:
            info = path.stat()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise BlobError(
                f"cannot inspect {path}: {exc.strerror}",
                hint="check the permissions of the blob store",
            ) from exc
        return info.st_size if stat.S_ISREG(info.st_mode) else None

    def _prepare(self) -> None:
        """Create the folders a put needs and sweep temporary files of crashed writers."""
        try:
            if not self.root.is_dir():
                self.root.mkdir(mode=_DIR_MODE, parents=True, exist_ok=True)
            _make_dir(self.root / ALGORITHM)
            _make_dir(self._temp_dir)
        except OSError as exc:
            raise _write_failure(exc, self.root, "preparing the blob store") from exc
        cutoff = time.time() - STALE_TEMP_SECONDS
        for entry in _sorted_entries(self._temp_dir):
            try:
                if entry.stat(follow_symlinks=False).st_mtime < cutoff:
                    Path(entry.path).unlink()
            except FileNotFoundError:
                continue  # another writer swept it or renamed it into place
            except OSError:
                continue  # a sweep is housekeeping; it never fails a put

    def _ingest(self, source: ByteSource, *, origin: str, size: int | None) -> BlobInfo:
        """Copy ``source`` into a temporary file while hashing, then move it into place."""
        hasher = hashlib.sha256()
        written = 0
        temp = self._temp_dir / f"{uuid.uuid4().hex}.part"
        try:
            fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            raise self._storing_failure(exc, size, written) from exc
        try:
            try:
                while True:
                    try:
                        chunk = source.read(CHUNK_SIZE)
                    except OSError as exc:
                        raise BlobError(
                            f"cannot read {origin} while storing it as a blob: {exc.strerror}",
                            hint="the blob store was not changed; check the source and retry",
                        ) from exc
                    if not chunk:
                        break
                    hasher.update(chunk)
                    _write_all(fd, chunk)
                    written += len(chunk)
                os.fsync(fd)
                os.fchmod(fd, _BLOB_MODE)
            finally:
                os.close(fd)
        except OSError as exc:
            _remove(temp)
            raise self._storing_failure(exc, size, written) from exc
        except BaseException:
            _remove(temp)
            raise
        return self._commit(temp, Digest(hasher.hexdigest()), written)

    def _commit(self, temp: Path, digest: Digest, size: int) -> BlobInfo:
        """Move a complete temporary file into place unless a sound copy is already there."""
        final = self._path(digest)
        try:
            if self._stored_size(final) == size:
                _remove(temp)
                return BlobInfo(digest, size)
            _make_dir(final.parent)
            temp.replace(final)
            _fsync_dir(final.parent)
        except OSError as exc:
            _remove(temp)
            raise self._storing_failure(exc, size, size) from exc
        except BaseException:
            _remove(temp)
            raise
        return BlobInfo(digest, size)

    def _storing_failure(self, exc: OSError, size: int | None, written: int) -> BlobError:
        amount = f"{size} bytes" if size is not None else f"at least {written} bytes"
        return _write_failure(exc, self.root, f"storing a blob of {amount}")

    def _not_found(self, digest: Digest) -> BlobNotFound:
        return BlobNotFound(
            f"no blob {digest} in the blob store at {self.root}",
            digest=digest,
            hint="it was never stored, was garbage-collected, or was quarantined as corrupt; "
            "run the job or command that produces it again",
        )

    def _quarantine(self, digest: Digest, opened: os.stat_result) -> Path | None:
        """Move a corrupt blob aside so it is never served again; None if it is gone."""
        path = self._path(digest)
        try:
            current = path.stat()
            if (current.st_dev, current.st_ino) != (opened.st_dev, opened.st_ino):
                return None  # a writer has already replaced it with a sound copy
            _make_dir(self._corrupt_dir)
            target = self._corrupt_dir / f"{digest.hex}.{uuid.uuid4().hex[:12]}"
            path.replace(target)
        except FileNotFoundError:
            return None
        except OSError:
            _remove(path)
            return None
        return target

    def _corrupted(
        self, digest: Digest, opened: os.stat_result, actual: str, size: int
    ) -> BlobCorrupted:
        path = self._path(digest)
        moved = self._quarantine(digest, opened)
        where = f"it was moved to {moved}" if moved else "it was removed from the store"
        return BlobCorrupted(
            f"blob {digest} at {path} is corrupt: its {size} bytes hash to {ALGORITHM}:{actual}",
            digest=digest,
            path=path,
            quarantined=moved,
            hint=f"{where} and will not be served again; run the job or command that produces "
            "it again to store it anew",
        )


class _VerifyingReader(io.RawIOBase):
    """Reads a blob file while hashing it, and checks the digest when the end is reached."""

    def __init__(self, store: BlobStore, digest: Digest, handle: io.FileIO) -> None:
        super().__init__()
        self._handle = handle
        self._store = store
        self._digest = digest
        self._hasher = hashlib.sha256()
        self._size = 0
        self._failure: BlobCorrupted | None = None
        self._verified = False
        self._opened = os.fstat(handle.fileno())

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: WriteableBuffer) -> int:
        if self._failure is not None:
            raise self._failure
        view = memoryview(buffer).cast("B")
        count = self._handle.readinto(view)
        if count is None:  # pragma: no cover - only non-blocking files return None
            return 0
        if count:
            self._hasher.update(view[:count])
            self._size += count
        elif not self._verified:
            actual = self._hasher.hexdigest()
            if actual != self._digest.hex:
                self._failure = self._store._corrupted(
                    self._digest, self._opened, actual, self._size
                )
                raise self._failure
            self._verified = True
        return count

    def readall(self) -> bytes:
        parts = []
        while chunk := self.read(CHUNK_SIZE):
            parts.append(chunk)
        return b"".join(parts)

    def close(self) -> None:
        self._handle.close()
        super().close()


def _as_digest(value: Digest | str) -> Digest:
    return value if isinstance(value, Digest) else Digest.parse(value)


def _shorten(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 90 else f"{text[:80]}…{text[-8:]}"


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _make_dir(path: Path) -> None:
    """Create an owner-only folder and make its entry durable; nothing if it exists."""
    try:
        path.mkdir(mode=_DIR_MODE)
    except FileExistsError:
        return
    path.chmod(_DIR_MODE)
    _fsync_dir(path.parent)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    except OSError as exc:
        # Some network filesystems cannot sync a folder; the rename is still atomic there.
        if exc.errno not in (errno.EINVAL, errno.ENOTSUP):
            raise
    finally:
        os.close(fd)


def _remove(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass
    except OSError:
        pass  # the temporary folder is swept by the next put


def _sorted_entries(folder: Path) -> list[os.DirEntry[str]]:
    try:
        with os.scandir(folder) as entries:
            return sorted(entries, key=lambda entry: entry.name)
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise BlobError(
            f"cannot list {folder}: {exc.strerror}",
            hint="check the permissions of the blob store",
        ) from exc


def _write_failure(
    exc: OSError, location: Path, action: str, *, into_store: bool = True
) -> BlobError:
    if into_store:
        unchanged = "nothing was stored"
        elsewhere = "or set SHIPYARD_BLOBS to a folder on a larger one"
    else:
        unchanged = "the destination was not changed"
        elsewhere = "or copy to a folder on another one"
    if exc.errno in _FULL_DEVICE:
        return DiskFull(
            f"no space left on the device holding {location} while {action} ({exc.strerror})",
            location=location,
            hint=f"free space on that device, {elsewhere}; {unchanged}",
        )
    return BlobError(
        f"cannot write to {location} while {action}: {exc.strerror}",
        hint=f"check that the folder is writable; {unchanged}",
    )
