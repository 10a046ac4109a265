"""Stage jobs: one Dagster job per stage of the catalog, launched by the GitHub sensors."""
