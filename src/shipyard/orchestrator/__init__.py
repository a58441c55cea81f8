"""The flows that cross pillars: commit → CI → gates → release → deploy → watch.

Only the orchestrator and the interfaces import several pillars; pillars never import it.
"""
