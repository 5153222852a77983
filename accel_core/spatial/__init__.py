"""Spatial acceleration: only part of the image tokens go through the transformer on a step.

`tokens` holds the token-subset plumbing (gather / scatter of block inputs, the patch metric
and the latent <-> token maps); `ras` is Region-Adaptive Sampling and `jit` Just-in-Time
anchor sampling, both written on plain torch; `apply` attaches them to a ComfyUI model.
"""
