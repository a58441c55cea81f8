"""Continuous monitoring: metric providers, the analysis of a release's metrics, its verdicts.

This pillar imports only ``core``; ``cd`` calls into it, never the other way round, so what it
reads from a deployment (the router's statistics) reaches it through value types defined here.
"""
