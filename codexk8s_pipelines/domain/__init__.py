"""Pure rules of the delivery process: stages, labels, trigger decisions, next steps, write scope.

Nothing here imports Dagster, PyGithub, a database driver or touches the network: every function takes plain
values and returns plain values, so that sensors, the CLI, the MCP tools and the tests share one truth.
"""
