"""Dependency freshness: the latest release of each dependency from its registry, versions behind, libyear."""
