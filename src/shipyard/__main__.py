"""``python -m shipyard`` runs the command line."""

from __future__ import annotations

from shipyard.cli.app import main

main()
