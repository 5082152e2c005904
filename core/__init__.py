"""The leaf package: what ``bench``, ``attacks`` and ``defenses`` all need. The method protocol,
the error type, the registry, atomic file writes and the epsilon check. It imports nothing of
the project, so no package cycle can run through it (see the README's layout section)."""
