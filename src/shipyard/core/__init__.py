"""The ground every pillar stands on: configuration, the store, the audit log, git, processes.

``core`` imports no pillar and no interface.
"""
