"""Regression tests for money-losing bugs found by review of the trading core."""
