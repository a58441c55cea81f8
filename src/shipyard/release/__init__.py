"""Version management: conventional commits, semver, changelog, tags, bundles and signing.

A release is an immutable, signed bundle; this pillar builds, signs, records and verifies it.
It imports ``core`` and ``gates`` only; the CLI and the release flow wire it to the user.
"""
