"""Plots (PNG) and self-contained HTML reports."""
