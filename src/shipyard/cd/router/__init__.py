"""Shipyard's traffic router: an HTTP/1.1 reverse proxy that splits traffic between versions.

One router process per environment (``python -m shipyard.cd.router``). It imports no ORM and
no other pillar and never writes the database; its routes come from its admin API and a state
file. ``client.RouterClient`` is how the rest of Shipyard talks to it.
"""
