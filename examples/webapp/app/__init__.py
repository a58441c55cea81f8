"""Shipyard's example web service: answers with its version, has a health check, and can be
told to be slow, to fail a share of requests or to start unhealthy, for canary demos and tests.
"""
