"""The rule modules, one per insight category; importing them fills the catalogue."""

from analytics_lib.insights.rules import cost, customer, market, revenue, risk

__all__ = ["cost", "customer", "market", "revenue", "risk"]
