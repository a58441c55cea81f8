"""The webhook notifier: each notice POSTed as JSON (Shipyard's own or Slack's), signed.

Every request carries ``X-Shipyard-Event`` and ``X-Shipyard-Delivery`` (the delivery key, the
same on a redelivery) and, with a secret, ``X-Shipyard-Signature-256: sha256=<hex>``: the
HMAC-SHA256 of the exact body, keyed by the secret, as GitHub signs its webhooks. Redirects are
not followed. The URL's path is never shown: Slack's, for one, is itself the credential.
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import json
import ssl
import urllib.parse
from typing import Literal

from shipyard import __version__
from shipyard.core.secrets import SecretValue
from shipyard.monitor.notify.interface import (
    DELIVERY_HEADER,
    EVENT_HEADER,
    SIGNATURE_HEADER,
    DeliveryFailed,
    Notice,
    Notifier,
)
from shipyard.monitor.notify.messages import summary

_ANSWER_SHOWN = 200  # characters of a refusing receiver's body kept in the reason


def signature(key: SecretValue, body: bytes) -> str:
    """The value of ``X-Shipyard-Signature-256`` for ``body``: ``sha256=`` and the hex HMAC."""
    digest = hmac.new(key.reveal().encode("utf-8"), body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def body_of(notice: Notice, format: Literal["json", "slack"]) -> bytes:
    """The request body: the notice as JSON, or Slack's ``{"text": ...}`` with one line."""
    document = {"text": summary(notice)} if format == "slack" else notice.as_json()
    text = json.dumps(document, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return text.encode("utf-8")


class WebhookNotifier(Notifier):
    """POSTs each notice to one URL; any 2xx answer is a delivery."""

    kind = "webhook"

    def __init__(
        self,
        url: str,
        *,
        format: Literal["json", "slack"] = "json",
        key: SecretValue | None = None,
        timeout: float = 10.0,
    ) -> None:
        self._url = urllib.parse.urlsplit(url)
        self._format: Literal["json", "slack"] = format
        self._key = key
        self._timeout = timeout
        rest = "/…" if self._url.path.strip("/") or self._url.query else ""
        self.target = f"{self._url.scheme}://{self._url.netloc}{rest}"

    def send(self, notice: Notice) -> str:
        """POST the notice; the receiver's status when it is 2xx, else ``DeliveryFailed``."""
        body = body_of(notice, self._format)
        headers = {
            "Content-Type": "application/json; charset=utf-8",
            "User-Agent": f"Shipyard/{__version__}",
            EVENT_HEADER: notice.type,
            DELIVERY_HEADER: notice.delivery,
        }
        if self._key is not None:
            headers[SIGNATURE_HEADER] = signature(self._key, body)
        path = self._url.path or "/"
        if self._url.query:
            path += f"?{self._url.query}"
        connection = self._connection()
        try:
            connection.request("POST", path, body=body, headers=headers)
            answer = connection.getresponse()
            text = answer.read(64 * 1024).decode("utf-8", errors="replace")
        except TimeoutError:
            raise DeliveryFailed(f"no answer within {self._timeout:g} s") from None
        except (OSError, http.client.HTTPException) as error:
            raise DeliveryFailed(f"cannot deliver: {_why(error)}") from None
        finally:
            connection.close()
        status = f"{answer.status} {answer.reason}".strip()
        if 200 <= answer.status < 300:
            return status
        said = " ".join(text.split())
        if len(said) > _ANSWER_SHOWN:
            said = said[: _ANSWER_SHOWN - 1] + "…"
        raise DeliveryFailed(f"answered {status}" + (f": {said}" if said else ""))

    def _connection(self) -> http.client.HTTPConnection:
        host = self._url.hostname or ""
        if self._url.scheme == "https":
            return http.client.HTTPSConnection(
                host,
                self._url.port,
                timeout=self._timeout,
                context=ssl.create_default_context(),
            )
        return http.client.HTTPConnection(host, self._url.port, timeout=self._timeout)


def _why(error: BaseException) -> str:
    if isinstance(error, ConnectionRefusedError):
        return "the connection was refused"
    if isinstance(error, ssl.SSLError):
        return f"TLS failed ({error.reason or error})"
    if isinstance(error, OSError) and error.strerror:
        return error.strerror.lower()
    return str(error) or type(error).__name__
