"""Sparse attention: token layouts, one block-selection rule per method, and the dispatcher."""
