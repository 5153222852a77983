"""The example graphs in ``workflows/``: the per-family API files and the UI twins of every API file."""
