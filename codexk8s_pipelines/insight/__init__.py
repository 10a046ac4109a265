"""Delivery insight: the daily metric assets over the audit trail, and the story of one issue (`trace`)."""
