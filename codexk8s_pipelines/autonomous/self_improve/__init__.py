"""The self-improve cadence: run evidence in an issue labelled for the self-improve agent, with its check."""

from .asset import MARKER, render_evidence, self_improve_evidence

__all__ = ["MARKER", "render_evidence", "self_improve_evidence"]
