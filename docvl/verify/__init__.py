"""Verification of page results: each output checked mechanically against its input (see verifier.py)."""
