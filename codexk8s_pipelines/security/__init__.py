"""Security scan: dependencies from lockfiles and manifests, OSV advisories matched offline, CVSS severity.

Plain functions over files and data, free of Dagster: the `security_findings` asset and `codexk8s scan` call them.
"""
