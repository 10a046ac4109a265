"""The docs-index check: a repository's docs chunked, embedded and indexed, with its head check (its job and
schedule are derived in `autonomous.registry`)."""

from .asset import docs_index

__all__ = ["docs_index"]
