"""Benchmarks: scripts that start their own services, measure one thing, and print one JSON line.

Each `bench/<name>.py` runs with no arguments (`python -m bench.<name>` or `python bench/<name>.py`
from the project root). `_harness` holds what they share: private Redis, PostgreSQL and LLM
server, worker processes, generated feeds, tables. Nothing in `graphs/`, `tasks/` or
`vectorstore/` imports from here.
"""
