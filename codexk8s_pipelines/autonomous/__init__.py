"""Assets and jobs of the periodic runs: the docs index now; security, freshness and drift with their issue."""
