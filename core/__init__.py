"""The leaf package: the method protocol, the error type and the registry that ``bench`` and
``defenses`` both import. It imports nothing of the project, so no package cycle can run
through it (see the README's layout section)."""
