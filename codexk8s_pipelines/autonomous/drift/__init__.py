"""The ops-drift check: rendered manifests against the live cluster, warn-only, with its asset check."""

from .asset import ops_drift

__all__ = ["ops_drift"]
