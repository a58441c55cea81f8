"""The ``notifications`` section: where Shipyard's events are sent, and which ones.

Validated raw form only: each item is a webhook (``url``, ``format``, ``secret``) or an email
(``smtp``, ``to``, ``from``) and names the event types it wants in ``on``. The monitor pillar
builds the notifiers from it; this module sends nothing and never reads a secret's value.
"""

from __future__ import annotations

import hashlib
import re
import urllib.parse
from datetime import timedelta
from typing import Annotated, Literal

from pydantic import AfterValidator, Field, field_validator, model_validator

from shipyard.core.config.pipeline import EnvName
from shipyard.core.config.problems import config_value_error, did_you_mean
from shipyard.core.config.types import Duration, StrictModel

EVENT_TYPES = (
    "deployment.created",
    "deployment.waiting",
    "deployment.approved",
    "deployment.progressing",
    "deployment.paused",
    "deployment.succeeded",
    "deployment.aborted",
    "deployment.rolled_back",
    "deployment.failed",
    "incident.opened",
    "incident.restored",
    "incident.resolved",
    "gate.passed",
    "gate.warned",
    "gate.failed",
    "gate.overridden",
    "release.published",
    "run.started",
    "run.finished",
    "run.cancelled",
)
"""Every event type Shipyard appends to its outbox, which ``on`` may name."""

TEST_EVENT_TYPE = "notification.tested"
"""The type of the event ``shipyard notify test`` sends; never stored in the outbox."""

_FAMILIES = tuple(dict.fromkeys(name.split(".")[0] for name in EVENT_TYPES))
_ADDRESS = re.compile(r"[^@\s<>(),;:\"\[\]]+@[^@\s<>(),;:\"\[\]]+\.[^@\s<>(),;:\"\[\]]+")
_SMTP = re.compile(
    r"(?P<host>[A-Za-z0-9][A-Za-z0-9.-]{0,252}|\[[0-9A-Fa-f:.]+\])(?::(?P<port>[0-9]{1,5}))?"
)
_SMTP_PORTS = {"none": 25, "starttls": 587, "ssl": 465}


def _check_event_pattern(value: str) -> str:
    """``deployment.rolled_back``, a family such as ``gate.*``, or ``*`` for every event."""
    if value == "*" or value in EVENT_TYPES:
        return value
    if value.endswith(".*") and value[:-2] in _FAMILIES:
        return value
    family = value.split(".")[0]
    hint = did_you_mean(value, [*EVENT_TYPES, *(f"{name}.*" for name in _FAMILIES)])
    if hint is None and family in _FAMILIES:
        known = [name for name in EVENT_TYPES if name.startswith(f"{family}.")]
        hint = f"the {family} events are: {', '.join(known)} (or {family}.* for all of them)"
    raise config_value_error(
        f"{value!r} is not an event Shipyard sends",
        hint=hint
        or f"name an event such as deployment.rolled_back, a family such as gate.* "
        f"({', '.join(f'{name}.*' for name in _FAMILIES)}), or * for every event",
    )


def _check_address(value: str) -> str:
    if not _ADDRESS.fullmatch(value):
        raise config_value_error(
            f"{value!r} is not an email address", hint="write a plain address: oncall@example.com"
        )
    return value


def _check_url(value: str) -> str:
    parts = urllib.parse.urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise config_value_error(
            "the url must be an http or https address with a host",
            hint="write url: https://hooks.example.com/shipyard",
        )
    try:
        parts.port  # noqa: B018 - reading it checks it
    except ValueError:
        raise config_value_error(
            "the url's port is not a number from 0 to 65535",
            hint="write url: https://hooks.example.com:8443/shipyard",
        ) from None
    if parts.username or parts.password:
        raise config_value_error(
            "the url holds a user name or password, which shipyard.yaml must not carry",
            hint="drop them from the url; name a secret instead (secret: WEBHOOK_KEY) to sign "
            "each request",
        )
    return value


def _check_smtp(value: str) -> str:
    match = _SMTP.fullmatch(value)
    if match is None:
        raise config_value_error(
            f"{value!r} is not an SMTP server",
            hint="write smtp: mail.example.com:587 (host:port; [::1]:25 for an IPv6 address)",
        )
    port = match.group("port")
    if port is not None and not 1 <= int(port) <= 65535:
        raise config_value_error(
            f"port {port} is not a port number", hint="write a port from 1 to 65535"
        )
    return value


EventPattern = Annotated[str, AfterValidator(_check_event_pattern)]
"""An event type (``deployment.rolled_back``), a family (``gate.*``) or ``*``."""
EmailAddress = Annotated[str, AfterValidator(_check_address)]
WebhookUrl = Annotated[str, AfterValidator(_check_url)]
SmtpServer = Annotated[str, AfterValidator(_check_smtp)]

_WEBHOOK_KEYS = ("url", "format")
_EMAIL_KEYS = ("smtp", "to", "from_", "user", "tls")


class Notification(StrictModel):
    """One notification: a webhook or an email address list, and the events it is sent."""

    url: WebhookUrl | None = None
    format: Literal["json", "slack"] | None = None
    smtp: SmtpServer | None = None
    to: list[EmailAddress] | None = Field(default=None, min_length=1, max_length=100)
    from_: EmailAddress | None = Field(default=None, alias="from")
    user: str | None = Field(default=None, min_length=1, max_length=200)
    tls: Literal["none", "starttls", "ssl"] | None = None
    secret: EnvName | None = None
    on: list[EventPattern] = Field(min_length=1, max_length=100)
    timeout: Duration = timedelta(seconds=10)
    max_age: Duration = timedelta(days=1)

    @field_validator("timeout")
    @classmethod
    def _timeout_in_range(cls, value: timedelta) -> timedelta:
        if not timedelta(seconds=1) <= value <= timedelta(minutes=5):
            raise config_value_error("the timeout must be from 1s to 5m", hint="write timeout: 10s")
        return value

    @field_validator("max_age")
    @classmethod
    def _max_age_positive(cls, value: timedelta) -> timedelta:
        if value < timedelta(minutes=1):
            raise config_value_error(
                "max_age must be at least 1m", hint="write max_age: 1d (the default)"
            )
        return value

    @model_validator(mode="after")
    def _one_kind_and_its_keys(self) -> Notification:
        if self.url is None and self.smtp is None:
            raise config_value_error(
                "a notification needs url (a webhook) or smtp (email)",
                hint="write {url: https://hooks.example.com/x, on: [deployment.rolled_back]} or "
                "{smtp: mail.example.com:587, from: shipyard@example.com, "
                "to: [oncall@example.com], on: [deployment.rolled_back]}",
            )
        if self.url is not None and self.smtp is not None:
            raise config_value_error(
                "a notification is a webhook (url) or an email (smtp), not both",
                hint="write two notifications, one with url and one with smtp",
                at=("smtp",),
            )
        if self.url is not None:
            for key in _EMAIL_KEYS:
                if getattr(self, key) is not None:
                    shown = key.rstrip("_")
                    raise config_value_error(
                        f"{shown} is for email notifications (smtp), not webhooks (url)",
                        hint=f"drop {shown}, or make it a notification of its own with smtp",
                        at=(shown,),
                    )
            return self
        for key in _WEBHOOK_KEYS:
            if getattr(self, key) is not None:
                raise config_value_error(
                    f"{key} is for webhooks (url), not email notifications (smtp)",
                    hint=f"drop {key}",
                    at=(key,),
                )
        if self.to is None:
            raise config_value_error(
                "an email notification needs to: the addresses it is sent to",
                hint="write to: [oncall@example.com]",
            )
        if self.from_ is None:
            raise config_value_error(
                "an email notification needs from: the address it is sent from",
                hint="write from: shipyard@example.com",
            )
        if (self.user is None) != (self.secret is None):
            raise config_value_error(
                "user and secret go together: the SMTP login and the secret holding its password",
                hint="write both (user: shipyard, secret: SMTP_PASSWORD), or neither",
                at=("secret" if self.secret is None else "user",),
            )
        if self.user is not None and self.tls == "none":
            raise config_value_error(
                "with tls: none the SMTP password would cross the network in clear",
                hint="write tls: starttls (or ssl), or drop user and secret",
                at=("tls",),
            )
        return self

    @property
    def kind(self) -> Literal["webhook", "email"]:
        """``webhook`` (url) or ``email`` (smtp): the notifier that sends it."""
        return "webhook" if self.url is not None else "email"

    @property
    def smtp_tls(self) -> Literal["none", "starttls", "ssl"]:
        """How an email notification secures its connection: as written, else starttls when
        it logs in and none when it does not."""
        if self.tls is not None:
            return self.tls
        return "starttls" if self.user is not None else "none"

    @property
    def smtp_address(self) -> tuple[str, int]:
        """The SMTP server's host and port (the port defaults by ``tls``: 25, 587 or 465)."""
        match = _SMTP.fullmatch(self.smtp or "")
        assert match is not None
        port = match.group("port")
        return match.group("host").strip("[]"), int(port) if port else _SMTP_PORTS[self.smtp_tls]

    @property
    def target(self) -> str:
        """Where it goes, fit to show: the webhook's scheme and host (its path may be a
        credential, as Slack's are), or the SMTP server and the addresses."""
        if self.url is not None:
            parts = urllib.parse.urlsplit(self.url)
            rest = "/…" if parts.path.strip("/") or parts.query else ""
            return f"{parts.scheme}://{parts.netloc}{rest}"
        return f"smtp://{self.smtp} to {', '.join(self.to or ())}"

    @property
    def identity(self) -> str:
        """A short, stable name of where it goes: the same receiver keeps the same identity
        when the list is reordered or ``on`` changes, so deliveries are not repeated."""
        where = self.url if self.url is not None else f"{self.smtp}|{','.join(self.to or ())}"
        return hashlib.sha256(f"{self.kind}|{where}".encode()).hexdigest()[:12]


def _check_receivers(notifications: list[Notification]) -> list[Notification]:
    """No receiver is written twice: both would be one consumer of the same events."""
    seen: dict[str, int] = {}
    for index, notification in enumerate(notifications):
        first = seen.setdefault(notification.identity, index)
        if first != index:
            raise config_value_error(
                f"notification {index} goes where notification {first} goes",
                hint="merge them: list every event in one notification's on",
                at=(index,),
            )
    return notifications


Notifications = Annotated[list[Notification], AfterValidator(_check_receivers)]
"""The ``notifications`` section: a list of notifications, each receiver written once."""
