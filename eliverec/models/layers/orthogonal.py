"""Latent orthogonal mapping between two domains' user spaces (DDTCDR, Li & Tuzhilin, WSDM 2020)."""

from __future__ import annotations

import torch
from torch import Tensor, nn


class OrthogonalMap(nn.Module):
    """``X = exp(A - A^T)``: orthogonal by construction (the exponential of a skew-symmetric matrix).

    ``forward(u) = u X^T`` maps domain A to B; ``inverse(v) = v X`` maps back, since ``X^{-1} = X^T``
    (DDTCDR's dual transfer with one matrix). The parametrisation keeps ``X^T X = I`` after any
    optimiser step (no penalty to tune); it starts at ``X = I`` plus a small rotation.

    >>> m = OrthogonalMap(4)
    >>> u = torch.randn(3, 4)
    >>> bool(torch.allclose(m.inverse(m(u)), u, atol=1e-5)), round(float(m.orthogonality_error()), 5)
    (True, 0.0)
    """

    def __init__(self, dim: int, init_std: float = 0.1) -> None:
        super().__init__()
        self.a = nn.Parameter(torch.randn(dim, dim) * init_std)

    def matrix(self) -> Tensor:
        """The orthogonal matrix ``X`` (d, d)."""
        return torch.linalg.matrix_exp(self.a - self.a.T)

    def forward(self, u: Tensor) -> Tensor:
        return u @ self.matrix().T

    def inverse(self, v: Tensor) -> Tensor:
        return v @ self.matrix()

    @torch.no_grad()
    def orthogonality_error(self) -> Tensor:
        """``max |X^T X - I|`` (0 up to float rounding)."""
        x = self.matrix()
        return (x.T @ x - torch.eye(x.shape[0], device=x.device, dtype=x.dtype)).abs().max()
