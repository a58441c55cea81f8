"""The email notifier: each notice as one message through an SMTP server.

The subject is the event's line; the body adds the event as JSON. ``Message-ID`` is made from
the delivery key, so a message sent again after a crash is the same message to a mail client
that drops repeats, and ``X-Shipyard-Delivery`` carries the key itself. It logs in only over
TLS (STARTTLS or SMTPS); the password never appears in what it says.
"""

from __future__ import annotations

import json
import smtplib
import ssl
from collections.abc import Sequence
from email.message import EmailMessage
from email.utils import format_datetime
from typing import Literal

from shipyard import __version__
from shipyard.core.secrets import SecretValue
from shipyard.monitor.notify.interface import (
    DELIVERY_HEADER,
    EVENT_HEADER,
    DeliveryFailed,
    Notice,
    Notifier,
)
from shipyard.monitor.notify.messages import summary


def message_of(notice: Notice, *, sender: str, to: Sequence[str]) -> EmailMessage:
    """The message of a notice: its line as the subject, the event as JSON below it."""
    message = EmailMessage()
    message["Subject"] = f"[Shipyard] {summary(notice)}"
    message["From"] = sender
    message["To"] = ", ".join(to)
    message["Date"] = format_datetime(notice.created_at)
    domain = sender.rpartition("@")[2]
    message["Message-ID"] = f"<{notice.delivery}.shipyard@{domain}>"
    message["X-Mailer"] = f"Shipyard/{__version__}"
    message[EVENT_HEADER] = notice.type
    message[DELIVERY_HEADER] = notice.delivery
    details = json.dumps(notice.as_json(), indent=2, sort_keys=True, ensure_ascii=False)
    message.set_content(f"{summary(notice)}\n\n{details}\n")
    return message


class EmailNotifier(Notifier):
    """Sends each notice to a list of addresses through one SMTP server."""

    kind = "email"

    def __init__(
        self,
        host: str,
        port: int,
        *,
        sender: str,
        to: Sequence[str],
        tls: Literal["none", "starttls", "ssl"] = "none",
        user: str | None = None,
        password: SecretValue | None = None,
        timeout: float = 10.0,
    ) -> None:
        self._host = host
        self._port = port
        self._sender = sender
        self._to = tuple(to)
        self._tls = tls
        self._user = user
        self._password = password
        self._timeout = timeout
        shown_host = f"[{host}]" if ":" in host else host
        self.target = f"smtp://{shown_host}:{port} to {', '.join(self._to)}"

    def send(self, notice: Notice) -> str:
        """Hand the message to the server; which addresses it took, or ``DeliveryFailed``."""
        message = message_of(notice, sender=self._sender, to=self._to)
        try:
            with self._connect() as client:
                if self._tls == "starttls":
                    client.starttls(context=ssl.create_default_context())
                if self._user is not None and self._password is not None:
                    client.login(self._user, self._password.reveal())
                refused = client.send_message(message)
        except smtplib.SMTPAuthenticationError as error:
            raise DeliveryFailed(
                f"the server refused the login of {self._user!r} ({error.smtp_code})"
            ) from None
        except smtplib.SMTPRecipientsRefused as error:
            raise DeliveryFailed(
                f"the server refused every address: {', '.join(sorted(error.recipients))}"
            ) from None
        except smtplib.SMTPResponseException as error:
            said = (
                error.smtp_error.decode("utf-8", "replace")
                if isinstance(error.smtp_error, bytes)
                else str(error.smtp_error)
            )
            raise DeliveryFailed(f"the server answered {error.smtp_code} {said}") from None
        except TimeoutError:
            raise DeliveryFailed(f"no answer within {self._timeout:g} s") from None
        except (OSError, smtplib.SMTPException) as error:
            raise DeliveryFailed(f"cannot send: {_why(error)}") from None
        taken = [address for address in self._to if address not in refused]
        answer = f"accepted for {', '.join(taken)}"
        if refused:
            answer += f"; refused {', '.join(sorted(refused))}"
        return answer

    def _connect(self) -> smtplib.SMTP:
        if self._tls == "ssl":
            return smtplib.SMTP_SSL(
                self._host,
                self._port,
                timeout=self._timeout,
                context=ssl.create_default_context(),
            )
        return smtplib.SMTP(self._host, self._port, timeout=self._timeout)


def _why(error: BaseException) -> str:
    if isinstance(error, ConnectionRefusedError):
        return "the connection was refused"
    if isinstance(error, ssl.SSLError):
        return f"TLS failed ({error.reason or error})"
    if isinstance(error, smtplib.SMTPNotSupportedError):
        return "it does not offer STARTTLS (write tls: none or tls: ssl if that is intended)"
    if isinstance(error, OSError) and error.strerror:
        return error.strerror.lower()
    return str(error) or type(error).__name__
