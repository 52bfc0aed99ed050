"""Likelihood losses on a model's (log-)probabilities: torch's ``nll_loss`` and ``binary_cross_entropy``.

Both take what a model outputs after its own ``log_softmax`` or ``sigmoid``; a loss that
starts from logits (``softmax_cross_entropy``, ``sigmoid_cross_entropy``) is the stabler
choice when the logits are at hand. Each computes torch's number for every reduction by
calling torch's kernel, so values and gradients are torch's by construction; lossfn adds
the contract around it: named errors, the 0-not-NaN empty mean, and no host sync.
"""

from __future__ import annotations

import math
from typing import Annotated, Any

import torch
import torch.nn.functional as F
from msgspec import Meta
from torch import Tensor

from lossfn.registry import AsTensor, Feature, InputCheck, Reduction, register_loss

from ._common import (
    as_index,
    as_param,
    cast,
    check_device,
    check_floating,
    check_integer_labels,
    check_min_rank,
    check_same_shape,
    compute_dtype,
    fail,
    kept_weights,
    reduce_loss,
    shape,
    unbatched,
    validate_class_range,
)
from ._softmax import ClassWeights, IgnoreIndex

__all__ = ["binary_cross_entropy", "nll"]


# -- nll ----------------------------------------------------------------------------------


@register_loss(
    "nll", [Feature.CATEGORY], kind="log_probs", validate=validate_class_range("nll", ignored="ignore_index")
)
def nll(
    log_probs: Tensor,
    labels: Tensor,
    *,
    class_weights: ClassWeights = None,
    ignore_index: IgnoreIndex = -100,
    reduction: Reduction = "mean",
) -> Tensor:
    r"""Negative log-likelihood of class labels under given log-probabilities (torch's ``nll_loss``).

    The model's output is taken as log-probabilities, ``log_softmax(logits)`` (nothing
    checks that they are: any real numbers are gathered as they are); the loss of a
    position is minus the entry of its label, weighted by that class's weight. With
    class weights :math:`w` (all 1 by default) and :math:`m_n = 0` where the label is
    ``ignore_index`` (else 1):

    .. math::

        \ell_n = -m_n\, w_{y_n} \log p_{n, y_n}

        \text{mean} = \frac{\sum_n \ell_n}{\sum_n m_n w_{y_n}}, \qquad
        \text{sum} = \sum_n \ell_n

    the weighting of ``torch.nn.functional.nll_loss``: the weighted mean divides by the
    sum of the kept labels' weights. ``nll(log_softmax(x), y)`` is
    ``softmax_cross_entropy(x, y)``. A class masked with log-probability ``-inf`` that is
    never the label contributes nothing and gets a zero gradient.

    Args:
        log_probs: ``[B, C]``, ``[B, C, d1, ...]`` (classes on dimension 1) or ``[C]``
            for one example, as torch takes them (half precision is computed in float32).
        labels: class indices ``[B]``, ``[B, d1, ...]`` or ``[]`` (a signed integer
            dtype). The module checks them (in ``[0, C)`` or ``ignore_index``); the pure
            function reads no values: an index out of range is a ``ValueError`` from
            torch's kernel.
        class_weights: ``[C]`` non-negative weights :math:`w` (a list or a tensor; a
            buffer of the module), torch's ``weight``.
        ignore_index: class-index label left out of the loss and of the mean's
            denominator (default ``-100``, as torch).
        reduction: ``"none"`` | ``"mean"`` | ``"sum"``.

    Returns:
        ``"none"``: :math:`\ell_n` per position, ``[B]`` (``[B, d1, ...]``; ``[]`` for
        one example), 0 at ignored positions; ``"sum"``: its sum; ``"mean"``: the
        weighted mean above (0 when nothing is left to average, where torch returns
        nan). Each is ``F.nll_loss``'s number. Same dtype as ``log_probs``.

    Examples:
        >>> import torch, lossfn.functional as LF
        >>> log_probs = torch.log_softmax(torch.tensor([[2.0, 0.0, -1.0], [0.0, 1.0, 0.0]]), dim=1)
        >>> LF.nll(log_probs, torch.tensor([0, 2]))
        tensor(0.8606)
        >>> LF.nll(log_probs, torch.tensor([0, 2]), class_weights=[1.0, 1.0, 3.0])
        tensor(1.2060)

    References:
        Checked against ``torch.nn.functional.nll_loss`` (``weight``, ``ignore_index``,
        ``[B, C]``, ``[B, C, d1, d2]`` and ``[C]`` inputs, the empty batch) for every
        reduction, values and gradients.
    """
    name = "nll"
    check_floating(name, "log_probs", log_probs)
    check_min_rank(name, "log_probs", log_probs, 1, "[B, C], [B, C, d1, ...] or [C]")
    x, labels, one = unbatched(log_probs, labels, rank=2, probabilities=False)  # (a non-tensor passes through)
    check_integer_labels(name, labels, "integer class indices")
    expected = x.shape[:1] + x.shape[2:]
    if labels.shape != expected:
        dims = "[" + ", ".join(str(d) for d in expected) + "]"
        expected_shape = f"class indices of shape {dims} for log_probs {shape(log_probs)}"
        raise fail(name, "labels", expected_shape, f"shape {shape(labels)}")
    check_device(name, "labels", labels, x, "log_probs")
    x = cast(x, compute_dtype(x))
    labels = as_index(labels)
    weights = None if class_weights is None else as_param(name, "class_weights", class_weights, x, (x.shape[1],))
    loss = F.nll_loss(x, labels, weight=weights, ignore_index=ignore_index, reduction="none")
    mean_weights = None
    if reduction == "mean":  # the denominator: the kept labels, each counted with its class weight
        kept = labels != ignore_index
        mean_weights = kept_weights(kept, None if weights is None else weights[torch.where(kept, labels, 0)])
    if one:
        loss = loss.squeeze(0)
    return cast(reduce_loss(loss, reduction, name=name, weights=mean_weights), log_probs.dtype)


# -- binary_cross_entropy -----------------------------------------------------------------


class _UpcastVJP(torch.autograd.Function):
    """``x`` cast up to float32, whose gradient, cast back to ``x``'s half dtype, saturates at
    that dtype's largest finite number instead of overflowing to ``inf``.

    A probability of about 1e-5 with target 1 has a gradient of about 1e5, beyond float16
    (65504): torch's float32 gradient would turn into ``inf`` at the cast back. This
    class has no ``jvp`` (Dynamo cannot trace one): it is what ``torch.compile`` sees.
    """

    generate_vmap_rule = True

    @staticmethod
    def forward(x: Tensor) -> Tensor:
        return x.float()

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: Tensor) -> None:
        ctx.dtype = inputs[0].dtype

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> Tensor:
        largest = torch.finfo(ctx.dtype).max
        return grad.clamp(-largest, largest).to(ctx.dtype)


class _Upcast(_UpcastVJP):
    """`_UpcastVJP` with forward mode too (``torch.func.jvp``, ``jacfwd``, ``hessian``)."""

    @staticmethod
    def jvp(ctx: Any, x_dot: Tensor) -> Tensor:
        return x_dot.float()


def _upcast(x: Tensor) -> Tensor:
    """Half-precision probabilities in float32 with a saturating gradient; others as they are."""
    if compute_dtype(x) == x.dtype:
        return x
    return (_UpcastVJP if torch.compiler.is_compiling() else _Upcast).apply(x)


def _validate_probabilities(probabilities: Tensor, labels: Tensor, *_: Any, **__: Any) -> InputCheck | None:
    """The module's check: probabilities and targets both in ``[0, 1]`` (NaN refused).

    Facts: the ``aminmax`` of each, in float32 (the judge compares ``0 <= low and high <= 1``,
    which a NaN fails). Inputs of the wrong kind give no check: the pure function says why.
    """
    if not isinstance(probabilities, Tensor) or not isinstance(labels, Tensor):
        return None
    if not probabilities.is_floating_point() or labels.is_complex() or probabilities.numel() == 0:
        return None
    if labels.shape != probabilities.shape or labels.dtype == torch.bool:  # bool labels are 0/1
        labels = probabilities.new_zeros(())
    bounds = (*torch.aminmax(probabilities.detach()), *torch.aminmax(labels.detach()))
    facts = torch.stack([bound.float() for bound in bounds])

    def judge(bounds: list[float]) -> ValueError | None:
        for arg, (low, high), what in (
            ("probabilities", bounds[:2], "in [0, 1]"),
            ("labels", bounds[2:], "targets in [0, 1]"),
        ):
            if not (0 <= low and high <= 1):
                return fail("binary_cross_entropy", arg, what, f"values in [{low:g}, {high:g}]")
        return None

    return InputCheck(facts, judge)


BinaryClassWeights = Annotated[
    Annotated[list[Annotated[float, Meta(ge=0)]], Meta(min_length=1)] | None,
    Meta(description="one non-negative weight per class, multiplying its terms (torch's weight over the batch)"),
    AsTensor(),
]


@register_loss(
    "binary_cross_entropy", [Feature.BINARY, Feature.SET], kind="probabilities", validate=_validate_probabilities
)
def binary_cross_entropy(
    probabilities: Tensor,
    labels: Tensor,
    *,
    class_weights: BinaryClassWeights = None,
    reduction: Reduction = "mean",
) -> Tensor:
    r"""Binary cross-entropy of targets under given probabilities (torch's ``binary_cross_entropy``).

    The model's output is taken as probabilities :math:`p \in [0, 1]`, ``sigmoid(logits)``;
    ``sigmoid_cross_entropy`` (on logits) is stabler where the logits are at hand. For
    target :math:`y \in [0, 1]` and class weight :math:`w_c` (all 1 by default):

    .. math::

        \ell_{n,c} = -w_c \bigl[y_{n,c} \max(\log p_{n,c}, -100)
                     + (1 - y_{n,c}) \max(\log(1 - p_{n,c}), -100)\bigr]

    torch's clamp of each log at :math:`-100` included, so :math:`p = 0` or :math:`1`
    gives a finite loss (at most :math:`100\,w_c`), and torch's gradient,
    :math:`w_c (p - y) / \max(p (1 - p), 10^{-12})`, finite there too. The gradient with
    respect to the targets is torch's, :math:`-w_c \operatorname{logit}(p)`, which is
    infinite at :math:`p \in \{0, 1\}`.

    A probability outside :math:`[0, 1]` gives ``inf`` at that element (NaN gives NaN),
    and a target outside :math:`[0, 1]` (or NaN) gives NaN, both with a zero gradient,
    where torch raises a ``RuntimeError`` for either (on a GPU, a device-side assert):
    the pure function reads no values, since raising would be a host sync. The module
    raises instead, a ``ValueError`` naming ``probabilities`` or ``labels`` (its
    ``validate=`` check, on by default).

    Half-precision inputs are computed in float32; the gradient that flows back to them
    saturates at the dtype's largest finite number (float16: 65504) where torch's
    float32 gradient (up to :math:`10^{12}` at :math:`p \in \{0, 1\}`) would overflow
    to ``inf`` in the cast back (reverse mode; forward mode is not clamped).

    Args:
        probabilities: any shape: ``[B]`` for a binary output, ``[B, C]`` (or
            ``[B, C, ...]``, classes on dimension 1) for a set output, ``[C]`` for one
            example; half precision is computed in float32.
        labels: same shape; 0/1 (bool or integer) or probabilities (float).
        class_weights: ``[C]`` weights :math:`w_c` of the classes on dimension 1
            (dimension 0 of a 1-d input), torch's ``weight`` laid along that dimension
            and broadcast over the batch: ``weight.view(C, 1, ...)``. Not for a 0-d input.
        reduction: ``"none"`` | ``"mean"`` | ``"sum"``.

    Returns:
        ``"none"``: :math:`\ell`, elementwise (the input's shape); ``"sum"``: its sum;
        ``"mean"``: its mean over all elements (the weights scale the terms and do not
        divide the mean, as in torch; 0 for an empty input, where torch returns nan).
        Each is ``F.binary_cross_entropy``'s number. Same dtype as ``probabilities``.

    Examples:
        >>> import torch, lossfn.functional as LF
        >>> probabilities = torch.tensor([[0.9, 0.2], [0.5, 0.0]])
        >>> labels = torch.tensor([[1, 0], [0, 1]])
        >>> LF.binary_cross_entropy(probabilities, labels)
        tensor(25.2554)
        >>> LF.binary_cross_entropy(probabilities, labels, class_weights=[1.0, 0.5], reduction="none")
        tensor([[ 0.1054,  0.1116],
                [ 0.6931, 50.0000]])

    References:
        Checked against ``torch.nn.functional.binary_cross_entropy`` (``weight``,
        probabilities 0 and 1, soft targets, ``[B]``, ``[B, C]``, ``[B, C, L]``, ``[C]``,
        ``[]``, the empty input) for every reduction, values and gradients.
    """
    name = "binary_cross_entropy"
    check_floating(name, "probabilities", probabilities)
    check_same_shape(name, probabilities, labels, names=("probabilities", "labels"))
    p = _upcast(probabilities)  # float32 for half precision, its gradient saturating at the dtype's range
    y = labels.to(p.dtype)
    weights = None
    if class_weights is not None:
        if p.ndim == 0:
            raise fail(name, "class_weights", "None for a 0-d input (no class dimension)", "weights")
        class_dim = 1 if p.ndim >= 2 else 0
        num_classes = p.shape[class_dim]
        weights = as_param(name, "class_weights", class_weights, p, (num_classes,))
        weights = weights.view((num_classes,) + (1,) * (p.ndim - 1 - class_dim))
    # torch's kernel raises on a probability or a target outside [0, 1] (on a GPU, a device-side
    # assert): a probability there gives inf (NaN stays NaN), a target there NaN, and the kernel
    # sees 1/2 at either (where twice: no gradient leaks)
    target_inside = (y >= 0) & (y <= 1)
    inside = (p >= 0) & (p <= 1) & target_inside
    half = torch.where(inside, p, 0.5), torch.where(inside, y, 0.5)
    elementwise = F.binary_cross_entropy(*half, weight=weights, reduction="none")
    outside = torch.where(p.isnan() | ~target_inside, math.nan, math.inf)  # a constant: nothing flows back
    elementwise = torch.where(inside, elementwise, outside)
    return cast(reduce_loss(elementwise, reduction, name=name), probabilities.dtype)
