"""Assets and jobs of the periodic runs: the docs index, the security scan, dependency freshness, ops drift and the
self-improve evidence, all partitioned by repository, and the dashboard issue each check keeps per repository."""
