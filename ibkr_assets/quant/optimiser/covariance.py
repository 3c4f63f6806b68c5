"""The covariance as the optimiser's variance term sees it: low rank plus a ridge.

The variance ``w'Σw`` is never handed to the solver as the dense ``n x n`` matrix:
:func:`covariance_factors` writes ``Σ`` exactly as ``w'Σw = ‖Z w‖² + d·‖w‖²`` with ``Z`` of
``k`` rows. A Ledoit–Wolf matrix built from the scenarios (:mod:`ibkr_assets.quant.risk_model`)
is exactly ``(1 − δ)/T·X'X + δμ·I`` with ``X`` the demeaned scenarios, so ``Z = √((1 − δ)/T)·X``
(``k = S`` = 504 rows instead of a 700-row Cholesky factor) and no decomposition is needed; any
other ``Σ`` uses its eigen-decomposition (``Z'Z = Σ − λ_min I``). Units are those of ``Σ``
(squared returns per period of the scenarios, daily in the pipeline). A
:class:`~ibkr_assets.quant.risk_model.RiskModel` holds its matrix in this form already
(:func:`model_factors`): no ``n x n`` matrix is formed or checked, which matters for a
universe of thousands of names.

Reference: O. Ledoit & M. Wolf (2004), "A well-conditioned estimator for large-dimensional
covariance matrices", *J. Multivariate Analysis* 88(2).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ibkr_assets.quant.optimiser.diagnostics import check_psd
from ibkr_assets.quant.risk_model import RiskModel

_SCENARIO_FORM_RTOL = 1e-9  # Σ − (a·X'X + b·I), relative to max|Σ|, to reuse the scenarios
_EIG_RTOL = 1e-12  # eigenvalues this close (relative to the largest) to the smallest are equal


@dataclass(frozen=True)
class CovarianceFactors:
    """``Σ`` as low rank plus ridge: ``w'Σw = ‖loadings·w‖² + ridge·‖w‖²``.

    ``from_scenarios``: ``loadings`` are the demeaned return scenarios, scaled — ``Σ`` is a
    multiple of the scenarios' own covariance plus a multiple of the identity (Ledoit–Wolf
    shrinkage towards ``μI``, or a plain sample covariance). Otherwise they come from the
    eigen-decomposition of ``Σ``.
    """

    loadings: np.ndarray
    ridge: float
    from_scenarios: bool

    @property
    def rank(self) -> int:
        """Number of rows of the low-rank part (scenarios, or eigenvectors kept)."""
        return int(self.loadings.shape[0])

    def diagonal(self) -> np.ndarray:
        """``Σ``'s diagonal: each name's variance."""
        return np.einsum("ij,ij->j", self.loadings, self.loadings) + self.ridge

    def variance(self, w: np.ndarray) -> float:
        """``w'Σw`` from the factors (what the optimiser's variance term evaluates)."""
        w = np.asarray(w, dtype="float64")
        z = self.loadings @ w
        return float(z @ z + self.ridge * w @ w)


def covariance_factors(cov: np.ndarray, scenarios: np.ndarray | None = None) -> CovarianceFactors:
    """The exact low-rank-plus-ridge form of the covariance ``cov`` (``n x n``, symmetric PSD).

    When ``cov = a·X'X + b·I`` for the demeaned ``scenarios`` ``X`` (``S x n``) — to
    :data:`_SCENARIO_FORM_RTOL` of its largest entry — the loadings are ``√a·X``. Otherwise
    they are the eigenvectors above the smallest eigenvalue ``λ_min``, and the ridge is
    ``λ_min``. Raises :class:`~ibkr_assets.quant.optimiser.OptimizationError` if ``cov`` is
    not positive semidefinite.
    """
    sigma = np.asarray(cov, dtype="float64")
    n = sigma.shape[0]
    if scenarios is not None and n > 1:
        r = np.asarray(scenarios, dtype="float64")
        x = r - r.mean(axis=0)
        gram = x.T @ x
        off = ~np.eye(n, dtype=bool)
        denom = float(np.sum(gram[off] ** 2))
        if denom > 0:
            a = float(np.sum(sigma[off] * gram[off])) / denom
            b = float(np.mean(np.diag(sigma) - a * np.diag(gram)))
            top = float(np.abs(sigma).max())
            fit = np.abs(sigma - a * gram - b * np.eye(n)).max()
            if a > 0 and b > -_SCENARIO_FORM_RTOL * top and fit <= _SCENARIO_FORM_RTOL * top:
                return CovarianceFactors(math.sqrt(a) * x, max(b, 0.0), True)
    vals, vecs = np.linalg.eigh(sigma)
    check_psd(sigma, vals)
    ridge = max(float(vals[0]), 0.0)
    keep = vals - ridge > _EIG_RTOL * max(float(vals[-1]), 1e-300)
    keep[-1] = True  # at least one row, so the problem's shape never degenerates
    loadings = vecs[:, keep] * np.sqrt(np.clip(vals[keep] - ridge, 0.0, None))
    return CovarianceFactors(loadings.T.copy(), ridge, False)


def model_factors(model: RiskModel) -> CovarianceFactors:
    """A risk model's daily covariance in this form: its own Ledoit–Wolf loadings and ridge
    (:attr:`~ibkr_assets.quant.risk_model.RiskModel.loadings`), in its symbols' order."""
    return CovarianceFactors(model.loadings, model.ridge, True)
