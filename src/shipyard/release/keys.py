"""Release signing keys: ed25519 key pairs, where their two halves live, and rotation.

Private keys stay outside the state directory (never in its database), readable by their owner
only; the state directory keeps public keys and a small JSON index of them, never a secret.
"""

from __future__ import annotations

import builtins
import contextlib
import fcntl
import hashlib
import json
import os
import stat
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes

from shipyard.core.errors import HostError, NotFoundError, UserError

if TYPE_CHECKING:
    from shipyard.core.state import StateDir

__all__ = [
    "ALGORITHM",
    "KEY_FILE_ENV",
    "PASSPHRASE_ENV",
    "InsecureKeyFile",
    "KeyFileExists",
    "KeyFileInvalid",
    "KeyInfo",
    "KeyStatus",
    "Keyring",
    "KeyringCorrupt",
    "PublicKey",
    "PublicKeyNotFound",
    "SigningError",
    "SigningKey",
    "SigningKeyExists",
    "SigningKeyMissing",
    "SigningKeyNotActive",
    "default_private_dir",
    "keyid_of",
    "load_public_key_file",
]

ALGORITHM = "ed25519"
"""The one signature algorithm of Shipyard's release keys."""

KEY_FILE_ENV = "SHIPYARD_SIGNING_KEY"
"""Names the private key file to sign with (and to write when a key is made)."""

PASSPHRASE_ENV = "SHIPYARD_SIGNING_KEY_PASSPHRASE"  # noqa: S105 - a variable name, not a secret
"""When set, private keys are written encrypted with it and decrypted with it when loaded."""

_INDEX_VERSION = 1
_PRIVATE_MODE = 0o600
_PUBLIC_MODE = 0o644
_DIR_MODE = 0o700
_GENERATE_HINT = "run 'shipyard keys generate' to make a signing key"


class SigningError(HostError):
    """A signing key cannot be made, found, loaded or used."""


class SigningKeyMissing(SigningError, UserError):
    """There is no active signing key, or its private half is not where it is expected."""


class SigningKeyExists(SigningError, UserError):
    """A key is already active where a first key was asked for; rotation replaces it."""


class KeyFileExists(SigningError, UserError):
    """A new private key would overwrite an existing file; nothing is ever overwritten."""


class KeyFileInvalid(SigningError, UserError):
    """A key file is not an ed25519 key in PEM form, or cannot be decrypted."""


class InsecureKeyFile(SigningError):
    """A private key file can be read or written by users other than its owner."""


class SigningKeyNotActive(SigningError, UserError):
    """The private key found is not the active key of the keyring."""


class PublicKeyNotFound(SigningError, NotFoundError):
    """No public key has the requested key id, or no file is at the given path."""


class KeyringCorrupt(SigningError):
    """``keyring.json`` or a stored public key is malformed or does not match its key id."""


class KeyStatus(StrEnum):
    """Whether a key signs new releases (active) or only verifies old ones (retired)."""

    ACTIVE = "active"
    RETIRED = "retired"


def keyid_of(key: Ed25519PublicKey) -> str:
    """The key id: lowercase hex sha256 of the DER SubjectPublicKeyInfo of ``key``.

    Anyone can recompute it from the public key alone, for example with
    ``openssl pkey -pubin -in KEY.pub -outform DER | sha256sum``.
    """
    der = key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return hashlib.sha256(der).hexdigest()


@dataclass(frozen=True)
class PublicKey:
    """An ed25519 public key with its key id; verifies signatures."""

    keyid: str
    key: Ed25519PublicKey = field(repr=False, compare=False)

    @classmethod
    def of(cls, key: Ed25519PublicKey) -> PublicKey:
        """Wrap a public key, computing its key id."""
        return cls(keyid_of(key), key)

    @classmethod
    def from_pem(cls, data: bytes, *, source: str) -> PublicKey:
        """Read a PEM SubjectPublicKeyInfo; ``KeyFileInvalid`` naming ``source`` if it is not."""
        if b"PRIVATE KEY" in data:
            raise KeyFileInvalid(
                f"{source} holds a private key, not a public key",
                hint="pass the public key instead: 'shipyard keys show' prints it",
            )
        try:
            loaded = serialization.load_pem_public_key(data)
        except (ValueError, UnsupportedAlgorithm) as exc:
            raise KeyFileInvalid(
                f"{source} is not a public key in PEM form",
                hint="expected a '-----BEGIN PUBLIC KEY-----' block as 'shipyard keys show' "
                "prints it",
            ) from exc
        if not isinstance(loaded, Ed25519PublicKey):
            raise KeyFileInvalid(
                f"{source} holds a {type(loaded).__name__} key, not an {ALGORITHM} key",
                hint="Shipyard signs releases with ed25519 keys only",
            )
        return cls.of(loaded)

    def pem(self) -> str:
        """The key as a PEM SubjectPublicKeyInfo block."""
        return self.key.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ).decode("ascii")

    def verifies(self, signature: bytes, data: bytes) -> bool:
        """Whether ``signature`` is this key's signature of ``data``."""
        try:
            self.key.verify(signature, data)
        except InvalidSignature:
            return False
        return True


@dataclass(frozen=True)
class SigningKey:
    """A loaded ed25519 private key with its key id; signs bytes."""

    keyid: str
    private: Ed25519PrivateKey = field(repr=False, compare=False)

    @classmethod
    def of(cls, key: Ed25519PrivateKey) -> SigningKey:
        """Wrap a private key, computing the key id of its public half."""
        return cls(keyid_of(key.public_key()), key)

    def sign(self, data: bytes) -> bytes:
        """The ed25519 signature of ``data``."""
        return self.private.sign(data)

    def public_key(self) -> PublicKey:
        """The public half."""
        return PublicKey(self.keyid, self.private.public_key())


@dataclass(frozen=True)
class KeyInfo:
    """One key of the keyring: its id, status, and when it was made and retired."""

    keyid: str
    status: KeyStatus
    created: datetime
    retired: datetime | None = None
    algorithm: str = ALGORITHM

    def to_json(self) -> dict[str, Any]:
        """The entry as stored in ``keyring.json``."""
        return {
            "keyid": self.keyid,
            "algorithm": self.algorithm,
            "status": self.status.value,
            "created": _timestamp(self.created),
            "retired": _timestamp(self.retired) if self.retired else None,
        }


def default_private_dir(env: Mapping[str, str] | None = None) -> Path:
    """Where private keys are written: ``$XDG_CONFIG_HOME/shipyard/keys`` (or ``~/.config``)."""
    environ = os.environ if env is None else env
    config = environ.get("XDG_CONFIG_HOME", "").strip()
    if config and Path(config).is_absolute():
        base = Path(config)
    else:
        home = environ.get("HOME", "").strip()
        base = (Path(home) if home else Path.home()) / ".config"
    return base / "shipyard" / "keys"


def load_public_key_file(path: Path) -> PublicKey:
    """Read a public key file (for ``--key PUB``); clear errors if missing or not a key."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise PublicKeyNotFound(
            f"no public key file at {path}",
            hint="check the path; 'shipyard keys show' prints the active public key",
        ) from None
    except OSError as exc:
        raise KeyFileInvalid(
            f"cannot read the public key file {path}: {exc.strerror}",
            hint="check that the file is readable",
        ) from exc
    return PublicKey.from_pem(data, source=str(path))


@dataclass(frozen=True)
class Keyring:
    """The signing keys of one state directory: public halves and index here, private elsewhere.

    ``root`` is ``<state>/keys``; generated private keys go to ``private_dir/<keyid>.pem``, or to
    ``key_file`` when set (``SHIPYARD_SIGNING_KEY``), which is also the file ``signer`` loads.
    """

    root: Path
    private_dir: Path
    key_file: Path | None = None
    passphrase: bytes | None = field(default=None, repr=False)

    @classmethod
    def for_state(cls, state: StateDir, env: Mapping[str, str] | None = None) -> Keyring:
        """The keyring of a state directory, with private key locations from ``env``."""
        environ = os.environ if env is None else env
        key_file = environ.get(KEY_FILE_ENV, "").strip()
        passphrase = environ.get(PASSPHRASE_ENV, "")
        return cls(
            root=state.keys,
            private_dir=default_private_dir(environ),
            key_file=Path(key_file).expanduser() if key_file else None,
            passphrase=passphrase.encode("utf-8") if passphrase else None,
        )

    @property
    def index_path(self) -> Path:
        """The JSON index of key ids, creation times and statuses."""
        return self.root / "keyring.json"

    @property
    def public_dir(self) -> Path:
        """The folder of PEM public keys, one ``<keyid>.pub`` per key."""
        return self.root / "public"

    def public_path(self, keyid: str) -> Path:
        """Where the public key with ``keyid`` is stored."""
        return self.public_dir / f"{keyid}.pub"

    def private_path(self, keyid: str) -> Path:
        """Where the private key with ``keyid`` is looked for (``key_file`` when set)."""
        return self.key_file if self.key_file is not None else self.private_dir / f"{keyid}.pem"

    # --- making keys -----------------------------------------------------------------------

    def generate(self) -> KeyInfo:
        """Make the first key pair; ``SigningKeyExists`` if a key is already active."""
        with self._locked():
            keys = self._read_index()
            active = [info for info in keys if info.status is KeyStatus.ACTIVE]
            if active:
                raise SigningKeyExists(
                    f"a signing key already exists: {active[0].keyid}",
                    hint="run 'shipyard keys rotate' to replace it with a new key",
                )
            info = self._make_key(datetime.now(UTC))
            self._write_index([*keys, info])
            return info

    def rotate(self) -> KeyInfo:
        """Make a new active key; the old one is retired and kept to verify old releases."""
        with self._locked():
            keys = self._read_index()
            if not any(info.status is KeyStatus.ACTIVE for info in keys):
                raise SigningKeyMissing(
                    f"there is no signing key to rotate in {self.root}", hint=_GENERATE_HINT
                )
            now = datetime.now(UTC)
            info = self._make_key(now)
            kept = [
                replace(old, status=KeyStatus.RETIRED, retired=now)
                if old.status is KeyStatus.ACTIVE
                else old
                for old in keys
            ]
            self._write_index([*kept, info])
            return info

    # --- reading keys ----------------------------------------------------------------------

    def list(self) -> builtins.list[KeyInfo]:
        """Every key, oldest first."""
        return self._read_index()

    def active(self) -> KeyInfo:
        """The key that signs new releases; ``SigningKeyMissing`` if there is none."""
        for info in self._read_index():
            if info.status is KeyStatus.ACTIVE:
                return info
        raise SigningKeyMissing(f"there is no signing key in {self.root}", hint=_GENERATE_HINT)

    def public_key(self, keyid: str) -> PublicKey:
        """The public key with ``keyid`` (active or retired); ``PublicKeyNotFound`` if unknown."""
        if not any(info.keyid == keyid for info in self._read_index()):
            raise PublicKeyNotFound(
                f"no key {keyid} in the keyring at {self.root}",
                hint="'shipyard keys list' shows the known keys; pass --key PUB to verify "
                "with a public key file",
            )
        return self._load_public(keyid)

    def public_keys(self) -> dict[str, PublicKey]:
        """Every known public key (active and retired) by key id, for verification."""
        return {info.keyid: self._load_public(info.keyid) for info in self._read_index()}

    def signer(self) -> SigningKey:
        """The active private key, loaded; refuses missing, unreadable or loosely kept files."""
        active = self.active()
        path = self.private_path(active.keyid)
        key = self._load_private(path, active.keyid)
        if key.keyid != active.keyid:
            raise SigningKeyNotActive(
                f"the private key at {path} is key {key.keyid}, but the active key is "
                f"{active.keyid}",
                hint=f"point {KEY_FILE_ENV} at the private key of {active.keyid}, or unset it",
            )
        return key

    # --- internals -------------------------------------------------------------------------

    def _make_key(self, now: datetime) -> KeyInfo:
        """Write a new key pair: the private half first, so an index never names a lost key."""
        private = Ed25519PrivateKey.generate()
        key = SigningKey.of(private)
        private_path = self.private_path(key.keyid)
        if _inside(private_path, self.root):
            raise SigningError(
                f"refusing to write a private key into the state directory ({private_path})",
                hint=f"set {KEY_FILE_ENV} to a path outside {self.root}",
            )
        self._write_private(private_path, private)
        try:
            self._write_public(key.public_key())
        except BaseException:
            with contextlib.suppress(OSError):
                private_path.unlink()
            raise
        return KeyInfo(keyid=key.keyid, status=KeyStatus.ACTIVE, created=now)

    def _write_private(self, path: Path, private: Ed25519PrivateKey) -> None:
        encryption: serialization.KeySerializationEncryption = (
            serialization.BestAvailableEncryption(self.passphrase)
            if self.passphrase
            else serialization.NoEncryption()
        )
        pem = private.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
        )
        try:
            _make_private_dirs(path.parent, tighten=self.key_file is None)
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
            fd = os.open(path, flags, _PRIVATE_MODE)
        except FileExistsError:
            raise KeyFileExists(
                f"a file already exists at {path}; a private key is never overwritten",
                hint=f"move it away, or set {KEY_FILE_ENV} to a path that does not exist yet",
            ) from None
        except OSError as exc:
            raise SigningError(
                f"cannot create the private key file {path}: {exc.strerror}",
                hint=f"make {path.parent} writable, or set {KEY_FILE_ENV} to another path",
            ) from exc
        try:
            try:
                os.fchmod(fd, _PRIVATE_MODE)
                _write_all(fd, pem)
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as exc:
            with contextlib.suppress(OSError):
                path.unlink()
            raise SigningError(
                f"cannot write the private key file {path}: {exc.strerror}",
                hint=f"free space on that device, or set {KEY_FILE_ENV} to a path on another one",
            ) from exc

    def _write_public(self, key: PublicKey) -> None:
        try:
            self.public_dir.mkdir(mode=_DIR_MODE, parents=True, exist_ok=True)
            _write_atomically(self.public_path(key.keyid), key.pem().encode("ascii"), _PUBLIC_MODE)
        except OSError as exc:
            raise SigningError(
                f"cannot write the public key to {self.public_dir}: {exc.strerror}",
                hint="check that the state directory is writable",
            ) from exc

    def _load_public(self, keyid: str) -> PublicKey:
        path = self.public_path(keyid)
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise KeyringCorrupt(
                f"the keyring lists key {keyid} but its public key at {path} cannot be read: "
                f"{exc.strerror}",
                hint="restore the file from a backup, or verify with --key PUB",
            ) from exc
        try:
            key = PublicKey.from_pem(data, source=str(path))
        except KeyFileInvalid as exc:
            raise KeyringCorrupt(exc.message, hint="restore the file from a backup") from exc
        if key.keyid != keyid:
            raise KeyringCorrupt(
                f"the public key file {path} holds key {key.keyid}, not {keyid}",
                hint="the file was replaced; restore it from a backup",
            )
        return key

    def _load_private(self, path: Path, keyid: str) -> SigningKey:
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except FileNotFoundError:
            raise SigningKeyMissing(
                f"the private key of the active signing key {keyid} is not at {path}",
                hint=f"restore it there, set {KEY_FILE_ENV} to its path, or run "
                "'shipyard keys rotate' to make a new key",
            ) from None
        except OSError as exc:
            raise SigningKeyMissing(
                f"cannot open the private key file {path}: {exc.strerror}",
                hint=f"make it readable by you only ('chmod 600 {path}')",
            ) from exc
        try:
            opened = os.fstat(fd)
            if not stat.S_ISREG(opened.st_mode):
                raise KeyFileInvalid(
                    f"{path} is not a regular file", hint="point at the private key file itself"
                )
            if opened.st_mode & 0o077:
                raise InsecureKeyFile(
                    f"the private key file {path} is accessible by other users "
                    f"(mode {stat.S_IMODE(opened.st_mode):04o})",
                    hint=f"run 'chmod 600 {path}'; if others may have read it, run "
                    "'shipyard keys rotate'",
                )
            if opened.st_uid != os.getuid():
                raise InsecureKeyFile(
                    f"the private key file {path} belongs to another user (uid {opened.st_uid})",
                    hint="sign as the key's owner, or make a key of your own",
                )
            with os.fdopen(fd, "rb", closefd=False) as handle:
                data = handle.read()
        except OSError as exc:
            raise SigningKeyMissing(
                f"cannot read the private key file {path}: {exc.strerror}",
                hint="check that the file is readable by you",
            ) from exc
        finally:
            os.close(fd)
        return SigningKey.of(self._parse_private(data, path))

    def _parse_private(self, data: bytes, path: Path) -> Ed25519PrivateKey:
        try:
            loaded = serialization.load_pem_private_key(data, password=self.passphrase)
        except TypeError as exc:
            if self.passphrase is None:
                raise KeyFileInvalid(
                    f"the private key file {path} is encrypted",
                    hint=f"set {PASSPHRASE_ENV} to its passphrase",
                ) from exc
            loaded = self._parse_unencrypted(data, path)
        except (ValueError, UnsupportedAlgorithm) as exc:
            detail = "cannot be decrypted" if b"ENCRYPTED" in data else "is not a PEM private key"
            raise KeyFileInvalid(
                f"the private key file {path} {detail}",
                hint=f"check {PASSPHRASE_ENV}"
                if b"ENCRYPTED" in data
                else "expected a PKCS#8 '-----BEGIN PRIVATE KEY-----' block",
            ) from exc
        if not isinstance(loaded, Ed25519PrivateKey):
            raise KeyFileInvalid(
                f"the private key file {path} holds a {type(loaded).__name__}, "
                f"not an {ALGORITHM} key",
                hint="Shipyard signs releases with ed25519 keys only",
            )
        return loaded

    @staticmethod
    def _parse_unencrypted(data: bytes, path: Path) -> PrivateKeyTypes:
        try:
            return serialization.load_pem_private_key(data, password=None)
        except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
            raise KeyFileInvalid(
                f"the private key file {path} is not a PEM private key",
                hint="expected a PKCS#8 '-----BEGIN PRIVATE KEY-----' block",
            ) from exc

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """Serialise key changes between processes sharing this state directory."""
        try:
            self.root.mkdir(mode=_DIR_MODE, parents=True, exist_ok=True)
            fd = os.open(self.root / ".keyring.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            raise SigningError(
                f"cannot lock the keyring in {self.root}: {exc.strerror}",
                hint="check that the state directory is writable",
            ) from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def _read_index(self) -> builtins.list[KeyInfo]:
        path = self.index_path
        try:
            raw = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return []
        except (OSError, UnicodeDecodeError) as exc:
            raise KeyringCorrupt(
                f"cannot read the keyring index {path}: {exc}",
                hint="check the file's permissions, or restore it from a backup",
            ) from exc
        try:
            document = json.loads(raw)
            entries = document["keys"]
            if document.get("version") != _INDEX_VERSION or not isinstance(entries, list):
                raise TypeError("unexpected version or 'keys' is not a list")
            keys = [_key_info(entry) for entry in entries]
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            raise KeyringCorrupt(
                f"the keyring index {path} is malformed: {exc}",
                hint="restore it from a backup; the public keys are in "
                f"{self.public_dir} and can be listed again from there",
            ) from exc
        if sum(info.status is KeyStatus.ACTIVE for info in keys) > 1:
            raise KeyringCorrupt(
                f"the keyring index {path} lists more than one active key",
                hint="edit it so that only the newest key is 'active'",
            )
        return keys

    def _write_index(self, keys: builtins.list[KeyInfo]) -> None:
        document = {"version": _INDEX_VERSION, "keys": [info.to_json() for info in keys]}
        text = json.dumps(document, indent=2, sort_keys=True) + "\n"
        try:
            _write_atomically(self.index_path, text.encode("utf-8"), _PUBLIC_MODE)
        except OSError as exc:
            raise SigningError(
                f"cannot write the keyring index {self.index_path}: {exc.strerror}",
                hint="check that the state directory is writable",
            ) from exc


def _key_info(entry: object) -> KeyInfo:
    if not isinstance(entry, dict):
        raise TypeError(f"a key entry is not an object: {entry!r}")
    keyid = entry["keyid"]
    if not isinstance(keyid, str) or len(keyid) != 64:
        raise ValueError(f"{keyid!r} is not a key id")
    if entry.get("algorithm", ALGORITHM) != ALGORITHM:
        raise ValueError(f"key {keyid} uses {entry['algorithm']!r}, not {ALGORITHM}")
    retired = entry.get("retired")
    return KeyInfo(
        keyid=keyid,
        status=KeyStatus(entry["status"]),
        created=_parse_timestamp(entry["created"]),
        retired=_parse_timestamp(retired) if retired is not None else None,
    )


def _timestamp(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _parse_timestamp(text: object) -> datetime:
    if not isinstance(text, str):
        raise TypeError(f"{text!r} is not a timestamp")
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        raise ValueError(f"timestamp {text!r} has no time zone")
    return moment


def _inside(path: Path, folder: Path) -> bool:
    return path.resolve().is_relative_to(folder.resolve())


def _make_private_dirs(folder: Path, *, tighten: bool) -> None:
    """Create missing folders owner-only; tighten our own key folder if it is loose."""
    missing: builtins.list[Path] = []
    current = folder
    while not current.exists():
        missing.append(current)
        current = current.parent
    for path in reversed(missing):
        with contextlib.suppress(FileExistsError):
            path.mkdir(mode=_DIR_MODE)
            path.chmod(_DIR_MODE)
    if tighten:
        info = folder.stat()
        if info.st_uid == os.getuid() and stat.S_IMODE(info.st_mode) & 0o077:
            folder.chmod(_DIR_MODE)


def _write_atomically(path: Path, data: bytes, mode: int) -> None:
    temp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.part")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    try:
        try:
            _write_all(fd, data)
            os.fsync(fd)
            os.fchmod(fd, mode)
        finally:
            os.close(fd)
        temp.replace(path)
    except BaseException:
        with contextlib.suppress(OSError):
            temp.unlink()
        raise


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]
