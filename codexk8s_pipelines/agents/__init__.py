"""Agents: which container and command each role runs (the catalog), and what it is told (the prompt templates).

Kept apart from the stage jobs so that swapping the agent CLI, its image or its wording is a data change
(`catalog.yaml`, `prompts/*.j2`) that a self-improve run may propose, not a code change.
"""
