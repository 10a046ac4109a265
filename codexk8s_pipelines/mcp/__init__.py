"""The MCP server: run-scoped tools an agent calls while it works (docs, run history, labels, status).

Importing this package does not import the MCP SDK: `tokens` is used by the stage jobs that mint a token for
an agent, and they should not pay for (or depend on) the server side. The server lives in `.server`.

Naming note: this subpackage is `codexk8s_pipelines.mcp`; the SDK is the top-level `mcp`. Modules here import
the SDK absolutely (`import mcp...`), which resolves to the SDK because Python 3 has no implicit relative
imports — as long as nobody puts `codexk8s_pipelines/` itself on `sys.path` (run the CLI as `codexk8s` or
`python -m codexk8s_pipelines.cli`, never `python codexk8s_pipelines/cli.py`).
"""

from __future__ import annotations

from .tokens import MCP_SECRET_VAR, RunScope, TokenError, issue_token, verify_token

__all__ = ["MCP_SECRET_VAR", "RunScope", "TokenError", "issue_token", "verify_token"]
