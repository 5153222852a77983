"""Benchmarks, sweeps and matrices: each prints speed and quality against the full-compute baseline.
``README.md`` beside this file lists each command and what it measures."""
