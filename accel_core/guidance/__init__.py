"""Perturbation guidance: SoftPAG on chosen attention heads (and the head search that picks them)."""
