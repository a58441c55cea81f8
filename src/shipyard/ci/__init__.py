"""Continuous integration: pipelines from ``shipyard.yaml`` run as a DAG of jobs.

The pipeline model, ``if`` expressions, secrets and masking, logs, executors and the scheduler.
It imports ``core`` only; results go to the store, never straight to another pillar.
"""
