"""Deployment strategies, by the name ``environments.<name>.strategy`` uses.

Each strategy is a module of its own over the shared step context (``base``); the controller
looks them up here and never imports one directly.
"""

from __future__ import annotations

from shipyard.cd.strategies.base import StepContext, Strategy
from shipyard.cd.strategies.blue_green import BlueGreen
from shipyard.cd.strategies.canary import Canary
from shipyard.cd.strategies.recreate import Recreate
from shipyard.cd.strategies.rolling import Rolling
from shipyard.cd.strategies.switch import WarmSwitch

STRATEGIES: dict[str, type[Strategy]] = {
    BlueGreen.name: BlueGreen,
    Canary.name: Canary,
    Recreate.name: Recreate,
    Rolling.name: Rolling,
    WarmSwitch.name: WarmSwitch,
}
"""Strategies by the name ``environments.<name>.strategy`` uses (``switch``: a warm rollback)."""

__all__ = [
    "STRATEGIES",
    "BlueGreen",
    "Canary",
    "Recreate",
    "Rolling",
    "StepContext",
    "Strategy",
    "WarmSwitch",
]
