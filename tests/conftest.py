"""Shared test configuration: the pytester plugin is enabled in pyproject's addopts."""
