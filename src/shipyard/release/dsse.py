"""DSSE v1 envelopes: sign and verify a typed payload exactly as the DSSE specification says.

The signed bytes are the spec's pre-authentication encoding (PAE) of the payload type and the
payload, never the JSON; this module knows nothing of key storage or of what the payload means.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from shipyard.core.errors import CheckFailed

__all__ = [
    "BadSignature",
    "Envelope",
    "MalformedEnvelope",
    "NoSignatures",
    "Signature",
    "SignatureInvalid",
    "Signer",
    "UnknownKey",
    "VerifiedPayload",
    "Verifier",
    "WrongPayloadType",
    "pae",
    "sign",
    "verify",
]

_STANDARD_B64 = re.compile(r"[A-Za-z0-9+/]*={0,2}")
_URLSAFE_B64 = re.compile(r"[A-Za-z0-9\-_]*={0,2}")


class SignatureInvalid(CheckFailed):
    """An envelope does not verify; the message names the key id and why."""

    def __init__(
        self, message: str, *, keyids: tuple[str, ...] = (), hint: str | None = None
    ) -> None:
        super().__init__(message, hint=hint)
        self.keyids = keyids


class MalformedEnvelope(SignatureInvalid):
    """The envelope is not DSSE JSON: bad JSON, a missing field, bad base64."""


class NoSignatures(SignatureInvalid):
    """The envelope carries no signature at all."""


class UnknownKey(SignatureInvalid):
    """Every signature names a key id that is not among the trusted keys."""


class BadSignature(SignatureInvalid):
    """A trusted key's signature does not match the payload and its type."""


class WrongPayloadType(SignatureInvalid):
    """The envelope's payload type is not the one the verifier expects."""


class Signer(Protocol):
    """Something that signs bytes with a private key known by ``keyid``."""

    @property
    def keyid(self) -> str:
        """The key id put in the envelope next to the signature."""
        ...

    def sign(self, data: bytes) -> bytes:
        """The signature of ``data``."""
        ...


class Verifier(Protocol):
    """A trusted public key that checks signatures."""

    @property
    def keyid(self) -> str:
        """The key id signatures by this key carry."""
        ...

    def verifies(self, signature: bytes, data: bytes) -> bool:
        """Whether ``signature`` is this key's signature of ``data``."""
        ...


def pae(payload_type: str, payload: bytes) -> bytes:
    """The DSSE v1 pre-authentication encoding: the exact bytes that are signed."""
    kind = payload_type.encode("utf-8")
    return b"DSSEv1 %d %b %d %b" % (len(kind), kind, len(payload), payload)


@dataclass(frozen=True)
class Signature:
    """One signature of an envelope and the (unauthenticated) id of the key that made it."""

    keyid: str
    sig: bytes


@dataclass(frozen=True)
class Envelope:
    """A DSSE envelope: a typed payload and its signatures."""

    payload_type: str
    payload: bytes
    signatures: tuple[Signature, ...]

    def signed_bytes(self) -> bytes:
        """The bytes every signature of this envelope signs (its PAE)."""
        return pae(self.payload_type, self.payload)

    def to_dict(self) -> dict[str, Any]:
        """The spec's JSON form: standard base64 for the payload and the signatures."""
        return {
            "payload": _b64encode(self.payload),
            "payloadType": self.payload_type,
            "signatures": [
                {"keyid": signature.keyid, "sig": _b64encode(signature.sig)}
                for signature in self.signatures
            ],
        }

    def to_json(self) -> bytes:
        """The envelope as compact UTF-8 JSON with sorted keys (the same bytes every time)."""
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":")).encode("utf-8")

    @classmethod
    def from_json(cls, data: bytes | str) -> Envelope:
        """Read the spec's JSON form; ``MalformedEnvelope`` says what is wrong and where."""
        try:
            document = json.loads(data)
        except (ValueError, UnicodeDecodeError) as exc:
            raise MalformedEnvelope(
                f"the envelope is not valid JSON: {exc}",
                hint="a DSSE envelope is a JSON object with payload, payloadType and signatures",
            ) from exc
        return cls.from_dict(document)

    @classmethod
    def from_dict(cls, document: object) -> Envelope:
        """Read an already parsed JSON envelope; ``MalformedEnvelope`` if it is not one."""
        if not isinstance(document, dict):
            raise MalformedEnvelope(
                f"the envelope is a JSON {type(document).__name__}, not an object"
            )
        payload_type = document.get("payloadType")
        if not isinstance(payload_type, str):
            raise MalformedEnvelope(f"the envelope's payloadType is {_shown(payload_type)}")
        payload = _b64decode(document.get("payload"), "payload")
        raw_signatures = document.get("signatures")
        if not isinstance(raw_signatures, list):
            raise MalformedEnvelope(
                f"the envelope's signatures are {_shown(raw_signatures)}, not a list"
            )
        signatures = []
        for index, entry in enumerate(raw_signatures):
            where = f"signatures[{index}]"
            if not isinstance(entry, dict):
                raise MalformedEnvelope(f"the envelope's {where} is not an object")
            keyid = entry.get("keyid", "")
            if not isinstance(keyid, str):
                raise MalformedEnvelope(f"the envelope's {where}.keyid is {_shown(keyid)}")
            signatures.append(Signature(keyid, _b64decode(entry.get("sig"), f"{where}.sig")))
        return cls(payload_type, payload, tuple(signatures))


@dataclass(frozen=True)
class VerifiedPayload:
    """A payload whose signature verified, with the ids of the keys that signed it."""

    payload_type: str
    payload: bytes
    keyids: tuple[str, ...]


def sign(payload_type: str, payload: bytes, signer: Signer) -> Envelope:
    """An envelope holding ``payload`` and one signature of its PAE by ``signer``."""
    signature = Signature(signer.keyid, signer.sign(pae(payload_type, payload)))
    return Envelope(payload_type, payload, (signature,))


def verify(
    envelope: Envelope,
    public_keys: Mapping[str, Verifier],
    *,
    payload_type: str | None = None,
) -> VerifiedPayload:
    """The payload if a trusted key signed it; else ``SignatureInvalid`` naming keys and why.

    A signature without a key id is tried against every trusted key. When ``payload_type`` is
    given the envelope must carry exactly that type.
    """
    if payload_type is not None and envelope.payload_type != payload_type:
        raise WrongPayloadType(
            f"the envelope's payload type is {envelope.payload_type!r}, expected {payload_type!r}",
            hint="this is not the kind of document that was asked for",
        )
    if not envelope.signatures:
        raise NoSignatures(
            "the envelope has no signature",
            hint="sign it again; an unsigned envelope proves nothing",
        )
    signed = envelope.signed_bytes()
    verified: list[str] = []
    unknown: list[str] = []
    failed: list[str] = []
    for signature in envelope.signatures:
        if not signature.keyid:
            candidates = list(public_keys.values())
        elif signature.keyid in public_keys:
            candidates = [public_keys[signature.keyid]]
        else:
            candidates = []
        if not candidates:
            unknown.append(signature.keyid or "(no key id)")
            continue
        match = next((key for key in candidates if key.verifies(signature.sig, signed)), None)
        if match is None:
            failed.append(signature.keyid or "(no key id)")
        elif match.keyid not in verified:
            verified.append(match.keyid)
    if verified:
        return VerifiedPayload(envelope.payload_type, envelope.payload, tuple(verified))
    if failed:
        raise BadSignature(
            f"the signature by key {', '.join(failed)} does not match the payload: "
            "the payload, its type or the signature was changed after signing",
            keyids=tuple(failed),
            hint="do not trust this document; sign it again from the original content",
        )
    trusted = ", ".join(sorted(public_keys)) or "none"
    raise UnknownKey(
        f"the envelope is signed by key {', '.join(unknown)}, which is not trusted "
        f"(trusted: {trusted})",
        keyids=tuple(unknown),
        hint="verify with that key's public key (--key PUB) if you trust it; "
        "'shipyard keys list' shows the keys of this state directory",
    )


def _b64encode(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _b64decode(value: object, where: str) -> bytes:
    """Decode standard or URL-safe base64 (both allowed by the spec), padded or not."""
    if not isinstance(value, str):
        raise MalformedEnvelope(f"the envelope's {where} is {_shown(value)}, not a string")
    if _STANDARD_B64.fullmatch(value):
        alphabet = b"+/"
    elif _URLSAFE_B64.fullmatch(value):
        alphabet = b"-_"
    else:
        raise MalformedEnvelope(
            f"the envelope's {where} is not base64: it has characters outside the alphabet"
        )
    body = value.rstrip("=")
    if len(body) % 4 == 1:
        raise MalformedEnvelope(f"the envelope's {where} is not base64: its length is wrong")
    padded = body + "=" * (-len(body) % 4)
    try:
        return base64.b64decode(padded, altchars=alphabet, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise MalformedEnvelope(f"the envelope's {where} is not base64: {exc}") from exc


def _shown(value: object) -> str:
    if value is None:
        return "missing"
    text = repr(value)
    return text if len(text) <= 40 else f"{text[:32]}…"
