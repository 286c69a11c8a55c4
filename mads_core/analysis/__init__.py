"""Measuring selections: coverage and diversity metrics, 2-D projections, the teaching walk."""
