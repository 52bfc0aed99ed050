r"""The sparse probability mappings sparsemax and 1.5-entmax, sort-based.

Both map a score vector :math:`z` onto the probability simplex with a threshold
:math:`\tau` that leaves exact zeros: sparsemax :math:`p = [z - \tau]_+` and
1.5-entmax :math:`p = [z/2 - \tau]_+^2`. The threshold is found as in the ``entmax``
package: sort the scores in descending order, take cumulative sums, read the support
size off a comparison at each rank (a sum of booleans: no data-dependent shape) and
gather the closed-form threshold at it. Everything is plain autograd: the sort's
permutation is piecewise constant, and the closed form is differentiable in the
scores on each piece, so ``torch.func`` transforms and ``torch.compile`` see ordinary
tensor ops, and the derivative of :math:`p` is the exact Jacobian of the mapping
(Martins & Astudillo 2016, Peters et al. 2019) wherever the support does not change.

Stability: the scores are shifted by their (detached) maximum, which changes neither
mapping, and floored at :data:`FLOOR`: after the shift :math:`\tau \ge -1` (the
maximum alone has mass :math:`[0 - \tau]_+ \le 1`), so a score below -2 is outside
either support, and the floor changes no probability while keeping ``-inf`` (a masked
class) and huge gaps out of the sums.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ._common import cast, check_floating, compute_dtype, fail, shape

__all__ = ["FLOOR", "entmax15_probabilities", "entmax15_threshold", "shifted", "sparsemax_probabilities",
           "sparsemax_threshold"]

#: Where the shifted scores are floored: strictly below every support (see the module doc).
FLOOR = -4.0


def shifted(z: Tensor) -> tuple[Tensor, Tensor]:
    """``(z - max z, max(z - max z, FLOOR))`` over the last dimension.

    The maximum is detached: both mappings, and the Fenchel–Young losses, are
    invariant to the shift, so its gradient is 0 exactly and need not be computed.
    """
    centered = z - z.amax(-1, keepdim=True).detach()
    return centered, centered.clamp_min(FLOOR)


def _ranks(z: Tensor) -> Tensor:
    return torch.arange(1, z.shape[-1] + 1, dtype=z.dtype, device=z.device)


def sparsemax_threshold(z: Tensor) -> Tensor:
    r"""The sparsemax threshold :math:`\tau` of shifted, floored scores ``[..., C]``, as ``[..., 1]``.

    With :math:`z_{(1)} \ge \dots \ge z_{(C)}` and :math:`S_k = \sum_{j \le k} z_{(j)}`:
    :math:`k(z) = \max\{k : 1 + k z_{(k)} > S_k\}` and :math:`\tau = (S_{k(z)} - 1) / k(z)`.
    The condition holds exactly for :math:`k \le k(z)`, so :math:`k(z)` is the number of
    ranks where it holds (as the ``entmax`` package counts it).
    """
    ordered = torch.sort(z, dim=-1, descending=True).values
    sums = ordered.cumsum(-1)
    support = (1 + _ranks(z) * ordered.detach() > sums.detach()).sum(-1, keepdim=True)
    return (sums.gather(-1, support - 1) - 1) / support.to(z.dtype)


def entmax15_threshold(x: Tensor) -> Tensor:
    r"""The 1.5-entmax threshold :math:`\tau` of halved, shifted, floored scores ``x = z / 2``.

    Peters et al.'s exact sort-based algorithm: at each rank :math:`k` of the sorted
    :math:`x`, with the mean :math:`\mu_k` and the sum of squared deviations :math:`s_k`
    of the top :math:`k`, the candidate :math:`\tau_k = \mu_k - \sqrt{(1 - s_k)/k}`
    (the root of :math:`\sum_{j \le k} (x_{(j)} - \tau)^2 = 1`); the support size is the
    number of ranks with :math:`\tau_k \le x_{(k)}`. The candidates are compared without
    gradient; the threshold is recomputed at the support size from the gathered sums
    (so no square root of a clamped 0 is ever differentiated) and refined by one Newton
    step on :math:`\sum_j [x_j - \tau]_+^2 = 1`: the closed form loses digits to
    cancellation in :math:`s_k` over a wide support (rows off 1 by ~1e-3 in float32 at
    50,000 classes), the step wins them back, and at the exact root it is the
    identity, so every derivative is still the closed form's.
    """
    ordered = torch.sort(x, dim=-1, descending=True).values
    ranks = _ranks(x)
    sums, squares = ordered.cumsum(-1), (ordered * ordered).cumsum(-1)
    fixed, fixed_sums = ordered.detach(), sums.detach()  # comparisons only: no derivative wanted
    mean = fixed_sums / ranks
    deviations = squares.detach() - fixed_sums * mean
    candidates = mean - ((1 - deviations) / ranks).clamp_min(0).sqrt()
    support = (candidates <= fixed).sum(-1, keepdim=True)
    count = support.to(x.dtype)
    total = sums.gather(-1, support - 1)
    mean = total / count
    deviation = squares.gather(-1, support - 1) - total * mean
    tau = mean - ((1 - deviation) / count).sqrt()
    u = (x - tau).clamp_min(0)  # u > 0 at the maximum (x = 0 > tau): the step never divides by 0
    return tau + ((u * u).sum(-1, keepdim=True) - 1) / (2 * u.sum(-1, keepdim=True))


def _class_last(name: str, logits: Tensor, dim: int) -> Tensor:
    check_floating(name, "logits", logits)
    if logits.ndim == 0:
        raise fail(name, "logits", "a tensor with a class dimension", "a 0-d tensor")
    if not -logits.ndim <= dim < logits.ndim:
        raise fail(name, "dim", f"a dimension of logits {shape(logits)}", repr(dim))
    if logits.shape[dim] == 0:
        raise fail(name, "logits", f"at least one class along dimension {dim}", f"shape {shape(logits)}")
    return cast(logits, compute_dtype(logits)).movedim(dim, -1)


def sparsemax_probabilities(logits: Tensor, dim: int = -1) -> Tensor:
    r"""Sparsemax: the Euclidean projection of the logits onto the probability simplex.

    .. math::

        \operatorname{sparsemax}(z) = \operatorname*{argmin}_{p \in \Delta} \lVert p - z \rVert^2
        = [z - \tau(z)]_+, \qquad \sum_c [z_c - \tau]_+ = 1

    Rows sum to 1 and classes below the threshold get exactly 0 (a ``-inf`` logit
    included). Sort-based (see :func:`sparsemax_threshold`), so it works under
    ``vmap``, ``grad``, ``jacrev``/``jacfwd`` and ``torch.compile(fullgraph=True)``;
    its Jacobian is :math:`\operatorname{diag}(s) - s s^\top / |s|` with :math:`s` the
    support indicator. Half-precision logits are computed in float32.

    Args:
        logits: any shape with at least one class along ``dim``.
        dim: the class dimension (default the last).

    Returns:
        Probabilities of the logits' shape and dtype.

    Examples:
        >>> import torch, lossfn.functional as LF
        >>> LF.sparsemax_probabilities(torch.tensor([[1.0, 0.5, -1.0], [3.0, 0.0, 0.0]]))
        tensor([[0.7500, 0.2500, 0.0000],
                [1.0000, 0.0000, 0.0000]])

    References:
        Martins & Astudillo, `From Softmax to Sparsemax: A Sparse Model of Attention and
        Multi-Label Classification <https://arxiv.org/abs/1602.02068>`_, ICML 2016.
        Checked against ``entmax.sparsemax``.
    """
    z = _class_last("sparsemax_probabilities", logits, dim)
    _, floored = shifted(z)
    p = (floored - sparsemax_threshold(floored)).clamp_min(0)
    return cast(p.movedim(-1, dim), logits.dtype)


def entmax15_probabilities(logits: Tensor, dim: int = -1) -> Tensor:
    r"""1.5-entmax: the sparse mapping between softmax and sparsemax (Tsallis :math:`\alpha = 1.5`).

    .. math::

        \operatorname{entmax}_{1.5}(z) = \operatorname*{argmax}_{p \in \Delta}
        \langle p, z \rangle + \tfrac{4}{3}\Bigl(1 - \sum_c p_c^{3/2}\Bigr)
        = [z/2 - \tau(z)]_+^2, \qquad \sum_c [z_c/2 - \tau]_+^2 = 1

    Rows sum to 1 with exact zeros (a ``-inf`` logit included), and the mapping is
    smoother than sparsemax: its Jacobian :math:`\operatorname{diag}(u) - u u^\top / \sum u`,
    :math:`u = \sqrt{p}`, is continuous. Sort-based (see :func:`entmax15_threshold`),
    so it works under ``torch.func`` transforms and ``torch.compile(fullgraph=True)``.
    Half-precision logits are computed in float32.

    Args:
        logits: any shape with at least one class along ``dim``.
        dim: the class dimension (default the last).

    Returns:
        Probabilities of the logits' shape and dtype.

    Examples:
        >>> import torch, lossfn.functional as LF
        >>> LF.entmax15_probabilities(torch.tensor([[1.0, 0.5, -1.0], [3.0, 0.0, 0.0]]))
        tensor([[0.6740, 0.3260, 0.0000],
                [1.0000, 0.0000, 0.0000]])

    References:
        Peters, Niculae & Martins, `Sparse Sequence-to-Sequence Models
        <https://arxiv.org/abs/1905.05702>`_, ACL 2019. Checked against ``entmax.entmax15``.
    """
    z = _class_last("entmax15_probabilities", logits, dim)
    _, floored = shifted(z)
    x = floored / 2
    u = (x - entmax15_threshold(x)).clamp_min(0)
    return cast((u * u).movedim(-1, dim), logits.dtype)
