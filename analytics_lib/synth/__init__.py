"""Synthetic demo data: the seeded simulation that fills every warehouse table.

``generate(warehouse, customers=5000, months=24, seed=7)`` builds the default demo data set;
``generate(warehouse, transactions=10_000_000)`` sizes a benchmark run by transaction count.
"""

from analytics_lib.synth.generator import GenerationSummary, generate

__all__ = ["GenerationSummary", "generate"]
