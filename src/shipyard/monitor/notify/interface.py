"""The notifier interface: one event as a notification carries it, and the kind that sends it.

A notifier answers ``send(notice)``: it delivers one notice to its receiver (a webhook, a mail
server) or raises ``DeliveryFailed`` saying why, in words fit for a log and the store. It never
records anything and never retries: the agent decides that.

::

    NotifyError                       base of every notifier error
    ├── DeliveryFailed                the receiver was not reached, or did not accept the notice
    └── NotifierUnavailable           a notifier cannot be built: an unknown kind, a missing secret
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType
from typing import Any

from shipyard.core.errors import ShipyardError, UserError

EVENT_HEADER = "X-Shipyard-Event"
"""The header (webhooks and email) that names the event's type."""

DELIVERY_HEADER = "X-Shipyard-Delivery"
"""The header that carries a notice's delivery key: the same on every redelivery."""

SIGNATURE_HEADER = "X-Shipyard-Signature-256"
"""The webhook header ``sha256=<hex HMAC-SHA256 of the body>``, keyed by the named secret."""


class NotifyError(ShipyardError):
    """Base of the errors of notifiers."""


class DeliveryFailed(NotifyError):
    """The receiver could not be reached, or it did not accept the notice; try again later."""


class NotifierUnavailable(NotifyError, UserError):
    """A notifier cannot be built as configured: an unknown kind, or its secret is missing."""


@dataclass(frozen=True)
class Notice:
    """One event of the outbox as it is sent: what happened, in which project, and the key that
    names this delivery (stable per event and receiver, so a receiver can drop a repeat)."""

    event_id: int
    type: str
    subject: str
    created_at: datetime
    project: str
    delivery: str
    payload: Mapping[str, Any] = field(default_factory=dict, hash=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "payload", MappingProxyType(dict(self.payload)))

    def as_json(self) -> dict[str, Any]:
        """The notice as plain JSON values: the body of a JSON webhook."""
        return {
            "delivery": self.delivery,
            "event": {
                "id": self.event_id,
                "type": self.type,
                "subject": self.subject,
                "created_at": self.created_at.isoformat(),
            },
            "project": self.project,
            "payload": dict(self.payload),
        }


class Notifier(ABC):
    """Sends notices to one receiver: a webhook URL, or addresses through an SMTP server."""

    kind: str
    """The kind of notification it serves, as the registry names it (``webhook``, ``email``)."""

    target: str
    """Where it sends, fit to show: never a credential (a webhook's path may be one)."""

    @abstractmethod
    def send(self, notice: Notice) -> str:
        """Deliver ``notice``; return what the receiver answered, in a few words.

        Raises ``DeliveryFailed`` when the receiver is not reached or does not accept it; its
        message says why without naming the receiver (callers show ``target`` beside it).
        """
