"""Experiments as data: sweeps, their launchers, run records, and the comparison of a sweep."""
