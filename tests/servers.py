"""Fixtures that start or reach real database servers (filled in by the stores work)."""
