"""Signing keys: where each half lives, with which permissions, rotation, and clear refusals."""

from __future__ import annotations

import hashlib
import json
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from release.signing_support import make_keyring
from shipyard.core.errors import UserError
from shipyard.core.state import StateDir
from shipyard.release import dsse
from shipyard.release.keys import (
    InsecureKeyFile,
    KeyFileExists,
    KeyFileInvalid,
    Keyring,
    KeyringCorrupt,
    KeyStatus,
    PublicKeyNotFound,
    SigningError,
    SigningKeyExists,
    SigningKeyMissing,
    SigningKeyNotActive,
    default_private_dir,
    keyid_of,
    load_public_key_file,
)


@pytest.fixture
def keyring(tmp_path: Path) -> Keyring:
    """An empty keyring in a temporary state folder."""
    return make_keyring(tmp_path)


def state_dir(tmp_path: Path) -> StateDir:
    """A state directory that belongs to no repository."""
    return StateDir(root=tmp_path / ".shipyard", repo_root=None, git_common_dir=None)


def mode(path: Path) -> int:
    """The permission bits of ``path``."""
    return stat.S_IMODE(path.stat().st_mode)


# --- generate ------------------------------------------------------------------------------


def test_generate_writes_an_owner_only_private_key_outside_the_state_directory(
    keyring: Keyring,
) -> None:
    info = keyring.generate()

    private = keyring.private_dir / f"{info.keyid}.pem"
    assert private.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")
    assert mode(private) == 0o600
    assert mode(keyring.private_dir) == 0o700
    assert not private.resolve().is_relative_to(keyring.root.parent.resolve())
    for path in keyring.root.parent.rglob("*"):
        if path.is_file():
            assert b"PRIVATE KEY" not in path.read_bytes(), path


def test_generate_keeps_the_public_key_and_an_index_in_the_state_directory(
    keyring: Keyring,
) -> None:
    info = keyring.generate()

    public = keyring.root / "public" / f"{info.keyid}.pub"
    assert public.read_text().startswith("-----BEGIN PUBLIC KEY-----")
    assert keyring.public_key(info.keyid).pem() == public.read_text()
    index = json.loads((keyring.root / "keyring.json").read_text())
    assert index["keys"] == [
        {
            "keyid": info.keyid,
            "algorithm": "ed25519",
            "status": "active",
            "created": info.created.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            "retired": None,
        }
    ]
    assert keyring.active() == info
    assert keyring.list() == [info]


def test_key_id_is_the_sha256_of_the_der_subject_public_key_info(keyring: Keyring) -> None:
    info = keyring.generate()

    pem = (keyring.root / "public" / f"{info.keyid}.pub").read_bytes()
    der = serialization.load_pem_public_key(pem).public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    assert info.keyid == hashlib.sha256(der).hexdigest()
    assert keyring.signer().keyid == info.keyid


def test_generate_refuses_when_a_key_exists_and_points_to_rotate(keyring: Keyring) -> None:
    first = keyring.generate()

    with pytest.raises(SigningKeyExists, match=first.keyid) as caught:
        keyring.generate()

    assert "shipyard keys rotate" in str(caught.value)
    assert keyring.list() == [first]


def test_the_signer_signs_with_the_active_key(keyring: Keyring) -> None:
    info = keyring.generate()

    signature = keyring.signer().sign(b"data")

    assert keyring.public_key(info.keyid).verifies(signature, b"data")


# --- missing and insecure keys -------------------------------------------------------------


def test_no_key_is_a_clear_error_with_the_command_that_fixes_it(keyring: Keyring) -> None:
    for attempt in (keyring.active, keyring.signer, keyring.rotate):
        with pytest.raises(SigningKeyMissing) as caught:
            attempt()
        assert "shipyard keys generate" in str(caught.value)
        assert isinstance(caught.value, UserError)


def test_a_missing_private_key_file_is_named_with_ways_to_fix_it(keyring: Keyring) -> None:
    info = keyring.generate()
    private = keyring.private_dir / f"{info.keyid}.pem"
    private.unlink()

    with pytest.raises(SigningKeyMissing) as caught:
        keyring.signer()

    message = str(caught.value)
    assert str(private) in message
    assert info.keyid in message
    assert "SHIPYARD_SIGNING_KEY" in message
    assert "shipyard keys rotate" in message


@pytest.mark.parametrize("loose", [0o640, 0o604, 0o660, 0o644])
def test_a_private_key_readable_by_others_is_refused(keyring: Keyring, loose: int) -> None:
    info = keyring.generate()
    private = keyring.private_dir / f"{info.keyid}.pem"
    private.chmod(loose)

    with pytest.raises(InsecureKeyFile, match=f"{loose:04o}") as caught:
        keyring.signer()

    assert f"chmod 600 {private}" in str(caught.value)


def test_a_private_key_that_is_not_pem_is_refused(keyring: Keyring) -> None:
    info = keyring.generate()
    private = keyring.private_dir / f"{info.keyid}.pem"
    private.chmod(0o600)
    private.write_bytes(b"not a key\n")

    with pytest.raises(KeyFileInvalid, match="not a PEM private key"):
        keyring.signer()


def test_a_private_key_of_another_type_is_refused(keyring: Keyring) -> None:
    info = keyring.generate()
    private = keyring.private_dir / f"{info.keyid}.pem"
    other = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    private.write_bytes(other)

    with pytest.raises(KeyFileInvalid, match="not an ed25519 key"):
        keyring.signer()


# --- rotation ------------------------------------------------------------------------------


def test_rotate_makes_a_new_active_key_and_retires_the_old_one(keyring: Keyring) -> None:
    old = keyring.generate()

    new = keyring.rotate()

    assert new.keyid != old.keyid
    assert keyring.active() == new
    (retired, active) = keyring.list()
    assert retired.keyid == old.keyid
    assert retired.status is KeyStatus.RETIRED
    assert retired.retired is not None and retired.retired >= retired.created
    assert active == new
    assert keyring.signer().keyid == new.keyid
    assert (keyring.private_dir / f"{old.keyid}.pem").exists()


def test_releases_signed_before_a_rotation_still_verify(keyring: Keyring) -> None:
    keyring.generate()
    before = dsse.sign("text/plain", b"release 1.0.0", keyring.signer())

    keyring.rotate()
    keyring.rotate()
    after = dsse.sign("text/plain", b"release 2.0.0", keyring.signer())

    trusted = keyring.public_keys()
    assert len(trusted) == 3
    assert dsse.verify(before, trusted).payload == b"release 1.0.0"
    assert dsse.verify(after, trusted).payload == b"release 2.0.0"
    assert dsse.verify(before, trusted).keyids != dsse.verify(after, trusted).keyids


# --- where keys live -----------------------------------------------------------------------


def test_private_keys_go_to_the_xdg_config_folder_by_default(tmp_path: Path) -> None:
    home = tmp_path / "home"
    assert default_private_dir({"HOME": str(home)}) == home / ".config" / "shipyard" / "keys"
    config = tmp_path / "xdg"
    env = {"HOME": str(home), "XDG_CONFIG_HOME": str(config)}
    assert default_private_dir(env) == config / "shipyard" / "keys"
    relative = {"HOME": str(home), "XDG_CONFIG_HOME": "relative/path"}
    assert default_private_dir(relative) == home / ".config" / "shipyard" / "keys"


def test_for_state_keeps_public_keys_in_the_state_directory(tmp_path: Path) -> None:
    state = state_dir(tmp_path)
    env = {"HOME": str(tmp_path / "home"), "XDG_CONFIG_HOME": str(tmp_path / "xdg")}
    keyring = Keyring.for_state(state, env)

    info = keyring.generate()

    assert (state.keys / "public" / f"{info.keyid}.pub").is_file()
    assert (tmp_path / "xdg" / "shipyard" / "keys" / f"{info.keyid}.pem").is_file()
    assert mode(tmp_path / "xdg" / "shipyard") == 0o700


def test_shipyard_signing_key_names_the_private_key_file(tmp_path: Path) -> None:
    key_file = tmp_path / "secrets" / "release.pem"
    env = {"HOME": str(tmp_path / "home"), "SHIPYARD_SIGNING_KEY": str(key_file)}
    keyring = Keyring.for_state(state_dir(tmp_path), env)

    info = keyring.generate()

    assert mode(key_file) == 0o600
    assert keyring.signer().keyid == info.keyid
    assert not (tmp_path / "home" / ".config" / "shipyard").exists()


def test_an_existing_key_file_is_never_overwritten(tmp_path: Path) -> None:
    key_file = tmp_path / "release.pem"
    key_file.write_text("precious\n")
    env = {"HOME": str(tmp_path / "home"), "SHIPYARD_SIGNING_KEY": str(key_file)}
    keyring = Keyring.for_state(state_dir(tmp_path), env)

    with pytest.raises(KeyFileExists, match=str(key_file)):
        keyring.generate()

    assert key_file.read_text() == "precious\n"
    assert keyring.list() == []


def test_a_private_key_that_is_not_the_active_key_is_refused(tmp_path: Path) -> None:
    state = state_dir(tmp_path)
    home = {"HOME": str(tmp_path / "home")}
    Keyring.for_state(state, home).generate()
    stray = tmp_path / "stray.pem"
    stray.write_bytes(
        Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    stray.chmod(0o600)
    keyring = Keyring.for_state(state, {**home, "SHIPYARD_SIGNING_KEY": str(stray)})

    with pytest.raises(SigningKeyNotActive, match="but the active key is"):
        keyring.signer()


def test_a_private_key_is_never_written_into_the_state_directory(tmp_path: Path) -> None:
    state = state_dir(tmp_path)
    inside = state.keys / "private.pem"
    keyring = Keyring.for_state(state, {"SHIPYARD_SIGNING_KEY": str(inside)})

    with pytest.raises(SigningError, match="refusing to write a private key"):
        keyring.generate()

    assert not inside.exists()


def test_a_passphrase_encrypts_the_private_key(tmp_path: Path) -> None:
    state = state_dir(tmp_path)
    home = {"HOME": str(tmp_path / "home")}
    secret = "correct horse battery staple"
    keyring = Keyring.for_state(state, {**home, "SHIPYARD_SIGNING_KEY_PASSPHRASE": secret})
    info = keyring.generate()
    private = default_private_dir(home) / f"{info.keyid}.pem"

    assert private.read_bytes().startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY-----")
    assert keyring.signer().keyid == info.keyid
    assert secret not in repr(keyring)

    with pytest.raises(KeyFileInvalid, match="SHIPYARD_SIGNING_KEY_PASSPHRASE") as missing:
        Keyring.for_state(state, home).signer()
    assert "encrypted" in str(missing.value)

    wrong = {**home, "SHIPYARD_SIGNING_KEY_PASSPHRASE": "hunter2-not-it"}
    with pytest.raises(KeyFileInvalid, match="cannot be decrypted") as bad:
        Keyring.for_state(state, wrong).signer()
    assert "hunter2-not-it" not in str(bad.value)
    assert secret not in str(bad.value)


# --- public keys ---------------------------------------------------------------------------


def test_a_public_key_file_can_be_loaded_for_verification(keyring: Keyring, tmp_path: Path) -> None:
    info = keyring.generate()
    exported = tmp_path / "release.pub"
    exported.write_text(keyring.public_key(info.keyid).pem())

    loaded = load_public_key_file(exported)

    assert loaded.keyid == info.keyid
    signature = keyring.signer().sign(b"data")
    assert loaded.verifies(signature, b"data")
    assert not loaded.verifies(signature, b"other data")


def test_a_missing_public_key_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(PublicKeyNotFound, match="no public key file at") as caught:
        load_public_key_file(tmp_path / "absent.pub")
    assert "shipyard keys show" in str(caught.value)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"hello\n", "not a public key in PEM form"),
        (b"", "not a public key in PEM form"),
        (
            Ed25519PrivateKey.generate().private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            ),
            "holds a private key",
        ),
        (
            ec.generate_private_key(ec.SECP256R1())
            .public_key()
            .public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            ),
            "not an ed25519 key",
        ),
    ],
)
def test_a_public_key_file_that_is_not_an_ed25519_public_key_is_refused(
    tmp_path: Path, content: bytes, message: str
) -> None:
    path = tmp_path / "key.pub"
    path.write_bytes(content)

    with pytest.raises(KeyFileInvalid, match=message):
        load_public_key_file(path)


def test_an_unknown_key_id_is_not_found(keyring: Keyring) -> None:
    keyring.generate()

    with pytest.raises(PublicKeyNotFound, match="no key 00"):
        keyring.public_key("00" * 32)


def test_a_replaced_public_key_file_is_detected(keyring: Keyring) -> None:
    info = keyring.generate()
    other = Ed25519PrivateKey.generate().public_key()
    keyring.public_path(info.keyid).write_bytes(
        other.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )

    with pytest.raises(KeyringCorrupt, match=keyid_of(other)):
        keyring.public_keys()


@pytest.mark.parametrize(
    "text",
    [
        "{not json",
        '{"version": 1}',
        '{"version": 2, "keys": []}',
        '{"version": 1, "keys": [{"keyid": "short", "status": "active", "created": "x"}]}',
        '{"version": 1, "keys": [{"keyid": "' + "a" * 64 + '", "status": "lost", '
        '"created": "2024-01-01T00:00:00Z"}]}',
    ],
)
def test_a_malformed_keyring_index_is_reported(keyring: Keyring, text: str) -> None:
    keyring.root.mkdir(parents=True)
    (keyring.root / "keyring.json").write_text(text)

    with pytest.raises(KeyringCorrupt, match=r"keyring\.json"):
        keyring.list()


def test_two_active_keys_in_the_index_are_reported(keyring: Keyring) -> None:
    keyring.generate()
    index = keyring.root / "keyring.json"
    document = json.loads(index.read_text())
    document["keys"].append({**document["keys"][0], "keyid": "b" * 64})
    index.write_text(json.dumps(document))

    with pytest.raises(KeyringCorrupt, match="more than one active key"):
        keyring.active()
