"""The docs-index check: a repository's docs chunked, embedded and indexed, with its head check."""

from .asset import AT_HEAD, docs_index

__all__ = ["AT_HEAD", "docs_index"]


def __getattr__(name: str) -> object:
    """`docs_index_job` is derived in the registry (`autonomous.jobs`), which imports this package."""
    if name == "docs_index_job":
        from ..jobs import docs_index_job

        return docs_index_job
    raise AttributeError(name)
