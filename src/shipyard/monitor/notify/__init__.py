"""Notifiers, by the kind of notification they send (``webhook``, ``email``).

``notifier_for`` builds the notifier of one configured notification, looking its secret up by
name; the secret's value goes to the notifier and nowhere else.
"""

from __future__ import annotations

from collections.abc import Callable

from shipyard.core.config.notifications import Notification
from shipyard.core.secrets import SecretError, SecretValue
from shipyard.monitor.notify.email import EmailNotifier
from shipyard.monitor.notify.fake import FakeNotifier
from shipyard.monitor.notify.interface import (
    DELIVERY_HEADER,
    EVENT_HEADER,
    SIGNATURE_HEADER,
    DeliveryFailed,
    Notice,
    Notifier,
    NotifierUnavailable,
    NotifyError,
)
from shipyard.monitor.notify.messages import summary
from shipyard.monitor.notify.webhook import WebhookNotifier, signature

SecretLookup = Callable[[str], SecretValue]
"""Finds a secret's value by name (``SecretStore.get``); raises ``SecretError`` if it cannot."""


def _webhook(notification: Notification, secret: SecretLookup) -> Notifier:
    assert notification.url is not None
    return WebhookNotifier(
        notification.url,
        format=notification.format or "json",
        key=None if notification.secret is None else secret(notification.secret),
        timeout=notification.timeout.total_seconds(),
    )


def _email(notification: Notification, secret: SecretLookup) -> Notifier:
    assert notification.from_ is not None and notification.to is not None
    host, port = notification.smtp_address
    return EmailNotifier(
        host,
        port,
        sender=notification.from_,
        to=notification.to,
        tls=notification.smtp_tls,
        user=notification.user,
        password=None if notification.secret is None else secret(notification.secret),
        timeout=notification.timeout.total_seconds(),
    )


NOTIFIERS: dict[str, Callable[[Notification, SecretLookup], Notifier]] = {
    "webhook": _webhook,
    "email": _email,
}
"""Notifier factories by the kind of notification (``Notification.kind``)."""


def notifier_for(notification: Notification, secret: SecretLookup) -> Notifier:
    """The notifier of ``notification``; ``NotifierUnavailable`` when its secret is missing."""
    factory = NOTIFIERS.get(notification.kind)
    if factory is None:
        raise NotifierUnavailable(
            f"there is no notifier for {notification.kind!r} notifications",
            hint=f"the kinds are: {', '.join(sorted(NOTIFIERS))}",
        )
    try:
        return factory(notification, secret)
    except SecretError as error:
        raise NotifierUnavailable(
            f"the notification to {notification.target} cannot be used: {error.message}",
            hint=error.hint,
        ) from None


__all__ = [
    "DELIVERY_HEADER",
    "EVENT_HEADER",
    "NOTIFIERS",
    "SIGNATURE_HEADER",
    "DeliveryFailed",
    "EmailNotifier",
    "FakeNotifier",
    "Notice",
    "Notifier",
    "NotifierUnavailable",
    "NotifyError",
    "SecretLookup",
    "WebhookNotifier",
    "notifier_for",
    "signature",
    "summary",
]
