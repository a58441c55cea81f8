"""DSSE envelopes: the exact signed bytes, round trips, every kind of tampering, and interop."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given
from hypothesis import strategies as st
from securesystemslib.dsse import Envelope as SslibEnvelope
from securesystemslib.exceptions import VerificationError
from securesystemslib.signer import CryptoSigner, SSlibKey

from release.signing_support import make_keyring
from shipyard.core.errors import CheckFailed
from shipyard.release import dsse
from shipyard.release.keys import Keyring, PublicKey, SigningKey

PAYLOAD_TYPE = "application/vnd.in-toto+json"
PAYLOAD = b'{"_type":"https://in-toto.io/Statement/v1"}'


@pytest.fixture
def keyring(tmp_path: Path) -> Keyring:
    """A keyring with one active key."""
    ring = make_keyring(tmp_path)
    ring.generate()
    return ring


@pytest.fixture
def signer(keyring: Keyring) -> SigningKey:
    """The active key of ``keyring``, loaded."""
    return keyring.signer()


@pytest.fixture
def trusted(signer: SigningKey) -> dict[str, PublicKey]:
    """The public half of ``signer``, as verification takes it."""
    return {signer.keyid: signer.public_key()}


def envelope_dict(envelope: dsse.Envelope) -> dict[str, object]:
    """The envelope's JSON, parsed."""
    return json.loads(envelope.to_json())  # type: ignore[no-any-return]


# --- PAE -----------------------------------------------------------------------------------


def test_pae_matches_the_example_of_the_dsse_specification() -> None:
    assert (
        dsse.pae("http://example.com/HelloWorld", b"hello world")
        == b"DSSEv1 29 http://example.com/HelloWorld 11 hello world"
    )


def test_pae_of_empty_type_and_payload() -> None:
    assert dsse.pae("", b"") == b"DSSEv1 0  0 "


def test_pae_counts_bytes_not_characters() -> None:
    assert dsse.pae("tÿpe", b"\x00\xff") == "DSSEv1 5 tÿpe 2 ".encode() + b"\x00\xff"


@given(st.text(), st.binary())
def test_pae_equals_an_independent_implementation(payload_type: str, payload: bytes) -> None:
    assert dsse.pae(payload_type, payload) == SslibEnvelope(payload, payload_type, {}).pae()


# --- round trip ----------------------------------------------------------------------------


def test_signed_envelope_verifies_and_returns_the_payload(
    signer: SigningKey, trusted: dict[str, PublicKey]
) -> None:
    envelope = dsse.sign(PAYLOAD_TYPE, PAYLOAD, signer)

    verified = dsse.verify(dsse.Envelope.from_json(envelope.to_json()), trusted)

    assert verified.payload == PAYLOAD
    assert verified.payload_type == PAYLOAD_TYPE
    assert verified.keyids == (signer.keyid,)


def test_json_form_is_the_specs_with_standard_base64(signer: SigningKey) -> None:
    envelope = dsse.sign(PAYLOAD_TYPE, b"\xfb\xff payload", signer)

    document = envelope_dict(envelope)

    assert set(document) == {"payload", "payloadType", "signatures"}
    assert document["payloadType"] == PAYLOAD_TYPE
    assert document["payload"] == base64.b64encode(b"\xfb\xff payload").decode()
    assert document["signatures"] == [
        {"keyid": signer.keyid, "sig": base64.b64encode(envelope.signatures[0].sig).decode()}
    ]
    assert dsse.Envelope.from_json(envelope.to_json()) == envelope


def test_signature_is_over_the_pae_not_the_json(signer: SigningKey) -> None:
    envelope = dsse.sign(PAYLOAD_TYPE, PAYLOAD, signer)

    public = signer.public_key()
    assert public.verifies(envelope.signatures[0].sig, dsse.pae(PAYLOAD_TYPE, PAYLOAD))
    assert not public.verifies(envelope.signatures[0].sig, PAYLOAD)


def test_url_safe_and_unpadded_base64_are_accepted(
    signer: SigningKey, trusted: dict[str, PublicKey]
) -> None:
    envelope = dsse.sign(PAYLOAD_TYPE, b"\xfb\xff\xfe?", signer)
    document = {
        "payloadType": PAYLOAD_TYPE,
        "payload": base64.urlsafe_b64encode(envelope.payload).decode().rstrip("="),
        "signatures": [
            {
                "keyid": signer.keyid,
                "sig": base64.urlsafe_b64encode(envelope.signatures[0].sig).decode().rstrip("="),
            }
        ],
    }

    verified = dsse.verify(dsse.Envelope.from_json(json.dumps(document)), trusted)

    assert verified.payload == b"\xfb\xff\xfe?"


def test_a_signature_without_key_id_is_tried_against_every_trusted_key(
    signer: SigningKey, trusted: dict[str, PublicKey]
) -> None:
    signed = dsse.sign(PAYLOAD_TYPE, PAYLOAD, signer)
    anonymous = dsse.Envelope(
        PAYLOAD_TYPE, PAYLOAD, (dsse.Signature("", signed.signatures[0].sig),)
    )

    assert dsse.verify(anonymous, trusted).keyids == (signer.keyid,)


def test_one_trusted_signature_among_unknown_ones_is_enough(
    signer: SigningKey, trusted: dict[str, PublicKey]
) -> None:
    stranger = SigningKey.of(Ed25519PrivateKey.generate())
    ours = dsse.sign(PAYLOAD_TYPE, PAYLOAD, signer).signatures
    theirs = dsse.sign(PAYLOAD_TYPE, PAYLOAD, stranger).signatures
    envelope = dsse.Envelope(PAYLOAD_TYPE, PAYLOAD, theirs + ours)

    assert dsse.verify(envelope, trusted).keyids == (signer.keyid,)


# --- tampering -----------------------------------------------------------------------------


def test_a_changed_payload_byte_is_a_bad_signature_naming_the_key(
    signer: SigningKey, trusted: dict[str, PublicKey]
) -> None:
    envelope = dsse.sign(PAYLOAD_TYPE, PAYLOAD, signer)
    edited = bytearray(envelope.payload)
    edited[10] ^= 0x01
    tampered = dsse.Envelope(envelope.payload_type, bytes(edited), envelope.signatures)

    with pytest.raises(dsse.BadSignature) as caught:
        dsse.verify(tampered, trusted)

    assert signer.keyid in str(caught.value)
    assert caught.value.keyids == (signer.keyid,)
    assert isinstance(caught.value, CheckFailed)


def test_a_changed_payload_type_is_a_bad_signature(
    signer: SigningKey, trusted: dict[str, PublicKey]
) -> None:
    envelope = dsse.sign(PAYLOAD_TYPE, PAYLOAD, signer)
    tampered = dsse.Envelope("application/json", envelope.payload, envelope.signatures)

    with pytest.raises(dsse.BadSignature, match="does not match the payload"):
        dsse.verify(tampered, trusted)


def test_a_changed_signature_byte_is_a_bad_signature(
    signer: SigningKey, trusted: dict[str, PublicKey]
) -> None:
    envelope = dsse.sign(PAYLOAD_TYPE, PAYLOAD, signer)
    document = envelope_dict(envelope)
    sig = bytearray(envelope.signatures[0].sig)
    sig[0] ^= 0x80
    document["signatures"] = [{"keyid": signer.keyid, "sig": base64.b64encode(sig).decode()}]

    with pytest.raises(dsse.BadSignature, match=signer.keyid):
        dsse.verify(dsse.Envelope.from_json(json.dumps(document)), trusted)


def test_a_signature_by_another_key_names_that_unknown_key(
    trusted: dict[str, PublicKey],
) -> None:
    stranger = SigningKey.of(Ed25519PrivateKey.generate())
    envelope = dsse.sign(PAYLOAD_TYPE, PAYLOAD, stranger)

    with pytest.raises(dsse.UnknownKey) as caught:
        dsse.verify(envelope, trusted)

    assert stranger.keyid in str(caught.value)
    assert "not trusted" in str(caught.value)
    assert caught.value.keyids == (stranger.keyid,)


def test_another_key_claiming_our_key_id_is_a_bad_signature(
    signer: SigningKey, trusted: dict[str, PublicKey]
) -> None:
    stranger = SigningKey.of(Ed25519PrivateKey.generate())
    forged = dsse.Signature(signer.keyid, stranger.sign(dsse.pae(PAYLOAD_TYPE, PAYLOAD)))

    with pytest.raises(dsse.BadSignature, match=signer.keyid):
        dsse.verify(dsse.Envelope(PAYLOAD_TYPE, PAYLOAD, (forged,)), trusted)


def test_an_envelope_without_signatures_is_refused(trusted: dict[str, PublicKey]) -> None:
    with pytest.raises(dsse.NoSignatures, match="no signature"):
        dsse.verify(dsse.Envelope(PAYLOAD_TYPE, PAYLOAD, ()), trusted)


def test_no_trusted_keys_means_nothing_verifies(signer: SigningKey) -> None:
    envelope = dsse.sign(PAYLOAD_TYPE, PAYLOAD, signer)

    with pytest.raises(dsse.UnknownKey, match=r"trusted: none"):
        dsse.verify(envelope, {})


def test_an_unexpected_payload_type_is_named(
    signer: SigningKey, trusted: dict[str, PublicKey]
) -> None:
    envelope = dsse.sign("text/plain", PAYLOAD, signer)

    with pytest.raises(dsse.WrongPayloadType, match="text/plain"):
        dsse.verify(envelope, trusted, payload_type=PAYLOAD_TYPE)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{not json", "not valid JSON"),
        ("[1, 2]", "JSON list, not an object"),
        ('{"payload": "", "signatures": []}', "payloadType is missing"),
        ('{"payloadType": "t", "signatures": []}', "payload is missing"),
        ('{"payloadType": "t", "payload": "a$b=", "signatures": []}', "payload is not base64"),
        ('{"payloadType": "t", "payload": "abcde", "signatures": []}', "length is wrong"),
        ('{"payloadType": "t", "payload": "", "signatures": {}}', "not a list"),
        ('{"payloadType": "t", "payload": "", "signatures": ["x"]}', r"signatures\[0\] is not"),
        (
            '{"payloadType": "t", "payload": "", "signatures": [{"keyid": 7, "sig": ""}]}',
            r"signatures\[0\]\.keyid is 7",
        ),
        (
            '{"payloadType": "t", "payload": "", "signatures": [{"keyid": "k", "sig": "%%"}]}',
            r"signatures\[0\]\.sig is not base64",
        ),
        (
            '{"payloadType": "t", "payload": "", "signatures": [{"keyid": "k"}]}',
            r"signatures\[0\]\.sig is missing",
        ),
    ],
)
def test_a_malformed_envelope_says_what_is_wrong(text: str, message: str) -> None:
    with pytest.raises(dsse.MalformedEnvelope, match=message):
        dsse.Envelope.from_json(text)


def test_a_malformed_envelope_is_a_signature_failure() -> None:
    with pytest.raises(dsse.SignatureInvalid):
        dsse.Envelope.from_json(b"\xff\xfe")


# --- an independent implementation ---------------------------------------------------------


def sslib_key(public: PublicKey) -> SSlibKey:
    """The same public key as securesystemslib sees it, under Shipyard's key id."""
    return SSlibKey.from_crypto(public.key, keyid=public.keyid)


def test_securesystemslib_verifies_a_shipyard_envelope(signer: SigningKey) -> None:
    envelope = dsse.sign(PAYLOAD_TYPE, PAYLOAD, signer)
    theirs = SslibEnvelope.from_dict(json.loads(envelope.to_json()))
    key = sslib_key(signer.public_key())

    accepted = theirs.verify([key], 1)

    assert list(accepted) == [signer.keyid]
    assert theirs.payload == PAYLOAD
    assert theirs.payload_type == PAYLOAD_TYPE


def test_securesystemslib_rejects_a_tampered_shipyard_envelope(signer: SigningKey) -> None:
    document = envelope_dict(dsse.sign(PAYLOAD_TYPE, PAYLOAD, signer))
    document["payload"] = base64.b64encode(PAYLOAD + b" ").decode()
    theirs = SslibEnvelope.from_dict(document)

    with pytest.raises(VerificationError):
        theirs.verify([sslib_key(signer.public_key())], 1)


def test_shipyard_verifies_an_envelope_signed_by_securesystemslib(signer: SigningKey) -> None:
    their_signer = CryptoSigner(signer.private, sslib_key(signer.public_key()))
    theirs = SslibEnvelope(PAYLOAD, PAYLOAD_TYPE, {})
    theirs.sign(their_signer)

    ours = dsse.Envelope.from_json(json.dumps(theirs.to_dict()))
    verified = dsse.verify(ours, {signer.keyid: signer.public_key()})

    assert verified.payload == PAYLOAD
    assert ours.signatures == dsse.sign(PAYLOAD_TYPE, PAYLOAD, signer).signatures
