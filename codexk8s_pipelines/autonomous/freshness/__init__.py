"""The dependency-freshness check: versions behind and libyears per repository, with its asset checks."""

from .asset import dependency_freshness

__all__ = ["dependency_freshness"]
