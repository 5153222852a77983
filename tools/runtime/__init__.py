"""The ComfyUI tree the tools and tests run, its server and client, and the deterministic model files.

``python -m tools.runtime prepare | serve | run | demo`` is the command line (``__main__.py``).
"""
