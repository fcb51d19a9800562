"""Scoring rules: one expression tree, emitted as Excel formulas and evaluated in Python."""
