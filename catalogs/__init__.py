"""Shipped catalogs (rack types, LLMs, efficiency factors, measured points) and their loaders.

Every number carries a source and a confidence; see the CSV files under ``data/``.
"""
