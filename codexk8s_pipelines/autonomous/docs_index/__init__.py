"""The docs-index check: a repository's docs chunked, embedded and indexed, with its head check (its job and
schedule are derived in `autonomous.registry`)."""

from .asset import AT_HEAD, docs_index

__all__ = ["AT_HEAD", "docs_index"]
