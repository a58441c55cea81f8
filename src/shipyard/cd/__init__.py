"""Continuous delivery: environments, strategies, the deployment controller, targets and the
traffic router. The router (``cd.router``) runs as its own process and imports nothing else
from this pillar.
"""
