"""The scan's inventory as a CycloneDX 1.6 SBOM (`codexk8s scan --format cyclonedx`), findings included.

Built with `cyclonedx-python-lib` and `packageurl-python` rather than hand-written JSON: both are what the
CycloneDX and purl projects publish, and the library serialises to the schema it ships (tests validate the output
against that schema). One component per (ecosystem, name, version); where it was found (file, line, direct or
transitive) travels as `codexk8s:*` properties, since CycloneDX has no field for "declared in this lockfile".
Findings become `vulnerabilities` that point at their component.
"""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal

from cyclonedx.model import Property
from cyclonedx.model.bom import Bom
from cyclonedx.model.component import Component, ComponentType
from cyclonedx.model.vulnerability import (
    BomTarget,
    Vulnerability,
    VulnerabilityRating,
    VulnerabilityScoreSource,
    VulnerabilitySeverity,
    VulnerabilitySource,
)
from cyclonedx.output.json import JsonV1Dot6
from packageurl import PackageURL

from codexk8s_pipelines.security.dependencies import Dependency
from codexk8s_pipelines.security.scan import Finding, ScanResult

__all__ = ["PURL_TYPES", "purl_of", "to_cyclonedx"]

# OSV ecosystem -> purl type (https://github.com/package-url/purl-spec/blob/master/PURL-TYPES.rst)
PURL_TYPES = {
    "PyPI": "pypi",
    "npm": "npm",
    "Go": "golang",
    "crates.io": "cargo",
    "Maven": "maven",
    "RubyGems": "gem",
    "Packagist": "composer",
    "NuGet": "nuget",
    "Pub": "pub",
    "Hex": "hex",
    "CRAN": "cran",
}
_METHODS = {
    "CVSS_V4": VulnerabilityScoreSource.CVSS_V4,
    "CVSS_V3": VulnerabilityScoreSource.CVSS_V3_1,
    "CVSS_V2": VulnerabilityScoreSource.CVSS_V2,
}


def purl_of(ecosystem: str, name: str, version: str | None) -> PackageURL:
    """The package URL of a dependency. Names with a namespace are split the way each purl type wants it:
    npm `@scope/name`, Go and Composer on the last `/`, Maven `group:artifact`."""
    kind = PURL_TYPES.get(ecosystem, "generic")
    namespace: str | None = None
    if kind == "maven" and ":" in name:
        namespace, name = name.split(":", 1)
    elif kind in ("npm", "golang", "composer") and "/" in name:
        namespace, name = name.rsplit("/", 1)
    return PackageURL(type=kind, namespace=namespace, name=name, version=version or None)


def _components(dependencies: Iterable[Dependency]) -> dict[tuple[str, str, str | None], Component]:
    components: dict[tuple[str, str, str | None], Component] = {}
    for dep in dependencies:
        key = (dep.ecosystem, dep.name, dep.version)
        component = components.get(key)
        if component is None:
            purl = purl_of(dep.ecosystem, dep.name, dep.version)
            component = Component(
                name=dep.name,
                version=dep.version,
                type=ComponentType.LIBRARY,
                purl=purl,
                bom_ref=purl.to_string(),
            )
            components[key] = component
        where = f"{dep.file}:{dep.line}" if dep.line else dep.file
        component.properties.add(Property(name="codexk8s:file", value=where))
        if dep.direct is not None:
            component.properties.add(Property(name="codexk8s:direct", value=str(dep.direct).lower()))
        if dep.unpinned_reason:
            component.properties.add(Property(name="codexk8s:unpinned", value=dep.unpinned_reason))
    return components


def _vulnerability(finding: Finding, component: Component | None) -> Vulnerability:
    severity = finding.severity
    rating = VulnerabilityRating(
        # A Decimal, as the model declares: a float is written as a JSON string ("9.8"), which the schema rejects.
        score=Decimal(str(severity.score)) if severity.score is not None else None,
        severity=VulnerabilitySeverity(severity.rating.lower()),
        method=_METHODS.get(severity.type or ""),
        vector=severity.vector,
        justification=f"source: {severity.source}" if severity.source else None,
    )
    return Vulnerability(
        id=finding.advisory_id,
        source=VulnerabilitySource(name="OSV", url=None),
        description=finding.summary or None,
        recommendation=f"Upgrade to {finding.fixed_version} or later." if finding.fixed_version else None,
        ratings=[rating],
        affects=[BomTarget(ref=component.bom_ref.value)] if component is not None and component.bom_ref.value else [],
        properties=[Property(name="codexk8s:fingerprint", value=finding.fingerprint)],
    )


def to_cyclonedx(result: ScanResult) -> str:
    """The SBOM as CycloneDX 1.6 JSON text."""
    bom = Bom()
    components = _components(result.inventory)
    for component in components.values():
        bom.components.add(component)
    for finding in result.findings:
        component = components.get((finding.ecosystem, finding.package, finding.version))
        bom.vulnerabilities.add(_vulnerability(finding, component))
    return JsonV1Dot6(bom).output_as_string(indent=2) + "\n"
