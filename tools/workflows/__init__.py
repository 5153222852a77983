"""The example graphs in ``workflows/``: the per-family API files, the UI twins of every API file and their
readable titles (``catalog``)."""
