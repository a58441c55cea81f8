"""Shipyard: one tool that carries a change from commit to production and keeps watching it."""

from __future__ import annotations

__version__ = "0.1.0"
