"""Coordinator of the RootTrading system."""

__version__ = "0.1.0"
