"""Kernels for the Mamba model: plain-PyTorch scans, and optional fast paths behind scan_backend."""
