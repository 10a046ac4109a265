"""GitHub access on PyGithub: credentials from the environment, conditional polling, rate-limit handling."""
