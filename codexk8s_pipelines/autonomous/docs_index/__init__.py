"""The docs-index check: a repository's docs chunked, embedded and indexed, with its head check."""

from typing import TYPE_CHECKING

from .asset import AT_HEAD, docs_index

if TYPE_CHECKING:
    import dagster as dg

__all__ = ["AT_HEAD", "docs_index"]


def __getattr__(name: str) -> "dg.UnresolvedAssetJobDefinition":
    """`docs_index_job` is derived in the registry (`autonomous.jobs`), which imports this package."""
    if name == "docs_index_job":
        from ..jobs import docs_index_job

        return docs_index_job
    raise AttributeError(name)
