"""Attention kernels: each Triton kernel sits beside its plain-PyTorch reference.

Importable without ComfyUI and without a GPU; the Triton kernels run on the CPU only under
`TRITON_INTERPRET=1` (the tests do that), the CPU path (`block_sparse_cpu`) is what a machine
without a GPU runs.
"""
