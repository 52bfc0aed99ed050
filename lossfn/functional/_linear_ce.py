"""Cross-entropy of a linear output layer, computed without its ``[N, V]`` logits.

A language model's last step, ``logits = hidden @ weight.T`` followed by a
cross-entropy over the vocabulary, holds ``N × V`` logits and as many gradients:
4 GiB at 32k tokens of a 32k vocabulary in float32. :func:`linear_cross_entropy`
takes the hidden states and the output layer's weight instead and works through the
tokens in chunks (``_linear_ce_function.py`` holds the arithmetic and the autograd
Functions), with PaLM's z-loss and Gemma's logit soft cap as options.
"""

from __future__ import annotations

from typing import Annotated, Any

import torch
from msgspec import Meta
from torch import Tensor

from lossfn.registry import Feature, InputCheck, Reduction, register_loss

from ._common import (
    cast,
    check_device,
    check_floating,
    check_integer_labels,
    compute_dtype,
    fail,
    reduce_loss,
    shape,
    validate_class_range,
)
from ._linear_ce_function import default_rows, fused, fused_sum, recomputing, token_losses
from ._softmax import IgnoreIndex, LabelSmoothing

__all__ = ["linear_cross_entropy"]

NAME = "linear_cross_entropy"

ZLoss = Annotated[float, Meta(ge=0.0, description="weight λ of PaLM's z-loss λ·logsumexp(logits)², per token")]
Softcap = Annotated[
    Annotated[float, Meta(gt=0.0)] | None,
    Meta(description="c of Gemma's logit soft cap c·tanh(logits / c) (None: no cap)"),
]
Shift = Annotated[bool, Meta(description="position t predicts label t + 1 (the next-token shift, no copy of hidden)")]
ChunkSize = Annotated[
    Annotated[int, Meta(ge=1)] | None,
    Meta(description="tokens per chunk (None: as many as fit 64 MiB of logits)"),
]


def _predict(hidden: Any) -> Any:
    raise ValueError(
        f"{NAME}: a prediction needs the output layer, which the hidden states do not hold: "
        "(hidden @ weight.T + bias).argmax(-1) (lossfn.nn.LinearCrossEntropyHead.logits)"
    )


#: The registry's hook for class indices, with the classes on dimension 0 of the weight ``[V, H]``.
_token_range = validate_class_range(NAME, ignored="ignore_index", class_dim=0, what="token indices")


def _validate(hidden: Any, weight: Any, labels: Any, bias: Any = None, **params: Any) -> InputCheck | None:
    """Token indices in ``[0, V)`` (or ``ignore_index``), ``V = weight.shape[0]``; shifted: those used."""
    if not all(isinstance(x, Tensor) for x in (hidden, weight, labels)) or weight.ndim != 2:
        return None
    if params.get("shift") and labels.ndim > 0:
        labels = labels[..., 1:]
    return _token_range(weight, labels, **params)


def _check(hidden: Any, weight: Any, labels: Any, bias: Any, shift: bool, chunk_size: Any) -> None:
    check_floating(NAME, "hidden", hidden)
    if hidden.ndim == 0:
        raise fail(NAME, "hidden", "of shape [N, H], [B, T, H] or [H]", "shape []")
    check_floating(NAME, "weight", weight)
    check_device(NAME, "weight", weight, hidden, "hidden")
    width = hidden.shape[-1]
    if weight.ndim != 2 or weight.shape[1] != width:
        expected = f"of shape [V, {width}] (the output layer's, as nn.Linear.weight)"
        raise fail(NAME, "weight", expected, f"shape {shape(weight)}")
    if weight.dtype != hidden.dtype:
        raise fail(NAME, "weight", f"of hidden's dtype {hidden.dtype}", f"dtype {weight.dtype}")
    check_integer_labels(NAME, labels, "integer token indices")
    check_device(NAME, "labels", labels, hidden, "hidden")
    if labels.shape != hidden.shape[:-1]:
        dims = "[" + ", ".join(str(d) for d in hidden.shape[:-1]) + "]"
        expected = f"token indices of shape {dims} for hidden {shape(hidden)}"
        raise fail(NAME, "labels", expected, f"shape {shape(labels)}")
    if shift and labels.ndim == 0:
        raise fail(NAME, "labels", "a sequence ([T] or [B, T]) when shift=True", "shape []")
    if bias is not None:
        check_floating(NAME, "bias", bias)
        check_device(NAME, "bias", bias, hidden, "hidden")
        if bias.shape != weight.shape[:1] or bias.dtype != hidden.dtype:
            expected = f"of shape [{weight.shape[0]}] and dtype {hidden.dtype}"
            raise fail(NAME, "bias", expected, f"shape {shape(bias)}, dtype {bias.dtype}")
    if isinstance(chunk_size, Tensor):
        raise fail(NAME, "chunk_size", "a Python int (it sets the loop) or None", "a tensor")


def _routed(hidden, weight, bias, labels, keep, hyper, rows, reduction) -> tuple[Tensor, bool]:
    """``(losses, summed)``: per-token losses ``[N]``, or their sum when ``summed``, by the route that fits."""
    tensors = [x for x in (hidden, weight, bias, *hyper) if isinstance(x, Tensor)]
    wanted = torch.is_grad_enabled() and any(x.requires_grad for x in tensors)
    if torch.compiler.is_compiling():
        if wanted:
            return recomputing(hidden, weight, bias, labels, keep, hyper, rows, compiling=True), False
        return token_losses(hidden, weight, bias, labels, keep, hyper, rows), False
    dual = any(torch.autograd.forward_ad.unpack_dual(x).tangent is not None for x in tensors)
    if torch._C._are_functorch_transforms_active() or dual:
        return recomputing(hidden, weight, bias, labels, keep, hyper, rows, compiling=False), False
    if not wanted:
        return fused(hidden, weight, bias, labels, keep, hyper, rows)[0], False
    if reduction == "none" or any(isinstance(v, Tensor) and v.requires_grad for v in hyper):
        return recomputing(hidden, weight, bias, labels, keep, hyper, rows, compiling=False), False
    return fused_sum(hidden, weight, bias, labels, keep, hyper, rows), True


@register_loss(
    NAME, [Feature.TEXT, Feature.SEQUENCE, Feature.CATEGORY], kind="hidden", validate=_validate, predict=_predict
)
def linear_cross_entropy(
    hidden: Tensor,
    weight: Tensor,
    labels: Tensor,
    bias: Tensor | None = None,
    *,
    ignore_index: IgnoreIndex = -100,
    label_smoothing: LabelSmoothing = 0.0,
    z_loss: ZLoss = 0.0,
    softcap: Softcap = None,
    shift: Shift = False,
    chunk_size: ChunkSize = None,
    reduction: Reduction = "mean",
) -> Tensor:
    r"""Softmax cross-entropy of ``hidden @ weight.T + bias``, without materializing those logits.

    The value and the gradients with respect to ``hidden``, ``weight`` and ``bias``
    are those of ``F.cross_entropy(hidden @ weight.T + bias, labels, ...)`` (plus the
    z-loss, after the soft cap), but no ``[N, V]`` tensor is ever made: the tokens
    are taken a chunk at a time (``chunk_size``; by default as many as fit 64 MiB of
    logits: 512 tokens of a 32k vocabulary in float32), and only that chunk's logits
    exist (one ``[rows, V]`` buffer, reused; two with a soft cap and a gradient).
    The vocabulary is not split: a chunk holds at least one token's ``V`` logits
    (1 MiB for a 256k vocabulary in float32), which bounds the memory at any ``V``.

    For token :math:`n` with hidden state :math:`h_n`, logits
    :math:`x_n = W h_n + b`, soft cap :math:`c` (:math:`z_n = c \tanh(x_n / c)`, or
    :math:`z_n = x_n` without one), :math:`\mathrm{lse}_n = \log \sum_v e^{z_{n,v}}`,
    label smoothing :math:`\varepsilon` and z-loss weight :math:`\lambda`:

    .. math::

        \ell_n = (1 - \varepsilon)(\mathrm{lse}_n - z_{n, y_n})
                 + \frac{\varepsilon}{V} \sum_v (\mathrm{lse}_n - z_{n,v})
                 + \lambda\, \mathrm{lse}_n^2

        \text{mean} = \frac{\sum_n m_n \ell_n}{\sum_n m_n}, \qquad
        \text{sum} = \sum_n m_n \ell_n

    with :math:`m_n = 0` where :math:`y_n` is ``ignore_index`` (and 1 elsewhere).
    With ``shift=True``, position :math:`t` of a sequence is scored on label
    :math:`t + 1` and the last position on none: the labels are shifted, never the
    hidden states (no copy of them). A left-out token's hidden state reaches neither
    the value nor any gradient, NaN or infinite included (its own gradient is 0):
    a padded position's NaN, which torch's ``F.cross_entropy`` of the logits and
    ``F.linear_cross_entropy`` carry into the weight's gradient, stays out.

    How: with ``reduction="mean"`` or ``"sum"`` under plain autograd, one pass
    over the chunks computes the loss and its gradients together (the chunk's logit
    gradient :math:`p(1 + 2\lambda\,\mathrm{lse}) - (1 - \varepsilon)\,\mathrm{onehot}
    - \varepsilon / V`, times :math:`1 - \tanh^2` under a cap, goes straight into
    ``g @ W`` for the hidden states and ``g^T @ h`` for the weight), so forward and
    backward together cost the naive form's three matrix products; the backward then
    only scales the stored gradients by the upstream scalar, in place. Under
    ``torch.func`` transforms, for ``reduction="none"``, for a tensor hyperparameter
    that needs a gradient and under ``torch.compile`` with a gradient, an autograd
    Function with ``setup_context`` and a generated vmap rule gives the per-token
    losses, a backward that recomputes each chunk's logits with differentiable
    operations (so Hessians work) and a ``jvp`` (``torch.compile`` sees it without the
    ``jvp``, which Dynamo cannot trace); ``torch.func.grad``, ``vmap``, ``jacfwd``,
    ``hessian`` and ``torch.compile(fullgraph=True)`` all work, where torch's chunked
    ``F.linear_cross_entropy`` supports none of them. Without a gradient, only the loss
    is computed. Half-precision inputs are computed in float32 (the weight is cast
    once: a float32 copy of it).

    Args:
        hidden: ``[N, H]``, ``[B, T, H]`` (any ``[..., H]``), or ``[H]`` for one token.
        weight: ``[V, H]``, the output layer's weight (as ``nn.Linear.weight``),
            of ``hidden``'s dtype and device.
        labels: token indices of ``hidden``'s shape without ``H`` (a signed integer
            dtype); ``ignore_index`` marks positions left out. The module checks
            that they lie in ``[0, V)``; the pure function reads no values.
        bias: ``[V]`` or None.
        ignore_index: the label left out (default ``-100``, as torch).
        label_smoothing: :math:`\varepsilon \in [0, 1)`, torch's label smoothing.
        z_loss: :math:`\lambda \ge 0` (PaLM uses 1e-4).
        softcap: :math:`c > 0`, or None for no cap (Gemma 2 uses 30).
        shift: score position :math:`t` on label :math:`t + 1` along the last
            dimension of ``labels`` (a causal language model's next token).
        chunk_size: tokens per chunk (a Python int), or None for the default.
        reduction: ``"none"`` | ``"mean"`` | ``"sum"``.

    Returns:
        ``"none"``: :math:`m \ell`, per token: ``labels``' shape (``[B, T - 1]`` with
        ``shift``), 0 at ignored positions; ``"sum"``: their sum; ``"mean"``: the mean
        over kept positions (0 when none is kept, where torch gives nan). Same dtype
        as ``hidden``.

    Examples:
        >>> import torch, lossfn.functional as LF
        >>> hidden = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
        >>> weight = torch.tensor([[1.0, -1.0], [0.5, 0.5], [-1.0, 2.0]])
        >>> labels = torch.tensor([0, 2, -100])
        >>> LF.linear_cross_entropy(hidden, weight, labels)
        tensor(0.3981)
        >>> LF.linear_cross_entropy(hidden, weight, labels, z_loss=1e-2, softcap=1.5)
        tensor(0.5537)

    References:
        Checked against ``F.cross_entropy(hidden @ weight.T + bias, labels, ...)``
        through autograd (values and every gradient, every reduction, each option)
        and ``F.linear_cross_entropy``. Z-loss: Chowdhery et al., `PaLM: Scaling
        Language Modeling with Pathways <https://arxiv.org/abs/2204.02311>`_, 2022.
        Soft cap: Gemma Team, `Gemma 2: Improving Open Language Models at a Practical
        Size <https://arxiv.org/abs/2408.00118>`_, 2024. Chunked cross-entropy with
        the gradient in the forward: Hsu et al., `Liger Kernel
        <https://arxiv.org/abs/2410.10989>`_, 2024; Wijmans et al., `Cut Your Losses in
        Large-Vocabulary Language Models <https://arxiv.org/abs/2411.09009>`_, 2024.
        Not a Ludwig loss.
    """
    _check(hidden, weight, labels, bias, shift, chunk_size)
    positions = labels.shape
    if shift:  # token t is scored on label t + 1; the last position of each sequence on none
        keep = torch.cat([labels[..., 1:] != ignore_index, torch.zeros_like(labels[..., :1], dtype=torch.bool)], -1)
        labels = torch.cat([labels[..., 1:], torch.zeros_like(labels[..., :1])], -1)
    else:
        keep = labels != ignore_index
    keep = keep.reshape(-1)
    safe = torch.where(keep, labels.reshape(-1), 0).long()  # an ignored label may be anything (-100)
    flat = hidden.reshape(-1, hidden.shape[-1])  # a view of contiguous hidden states
    hyper = (label_smoothing, z_loss, softcap)
    rows = default_rows(weight.shape[0], compute_dtype(hidden)) if chunk_size is None else chunk_size
    losses, summed = _routed(flat, weight, bias, safe, keep, hyper, rows, reduction)
    if summed:
        return cast(reduce_loss(losses, reduction, name=NAME, weights=keep), hidden.dtype)
    losses = losses.reshape(positions)
    keep = keep.reshape(positions)
    if shift:
        losses, keep = losses[..., :-1], keep[..., :-1]
    return cast(reduce_loss(losses, reduction, name=NAME, weights=keep), hidden.dtype)
