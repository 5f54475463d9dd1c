"""Faults injected into real worker processes, each test bounded in time.

What they prove is the table "What happens when…" in docs/OPERATIONS.md.
"""
