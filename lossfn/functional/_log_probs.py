"""Sequence log-probabilities, the inputs of the preference losses, and their shared checks.

:func:`sequence_log_probs` turns a causal model's logits ``[B, T, V]`` and the token
labels ``[B, T]`` into one log-probability per sequence ``[B]``: what TRL's trainers and
Liger-Kernel's reference paths compute before ``dpo``, ``simpo``, ``orpo`` and ``kto``
(``lossfn/functional/_preference.py``). The rest of this module is private to those
losses: the checks of their ``[B]`` inputs, a stable :math:`\\log(1 - e^x)`, and the
``validate=`` hook their modules run.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor

from lossfn.registry import InputCheck

from ._common import (
    as_index,
    cast,
    check_device,
    check_floating,
    check_integer_labels,
    check_same_shape,
    compute_dtype,
    fail,
    keep_where,
    shape,
    unbatched,
)

__all__ = ["sequence_log_probs"]

_NAME = "sequence_log_probs"
#: How far above 0 a log-probability may be (rounding in another engine) before a module refuses it.
LOG_PROB_SLACK = 1e-3
_LN2 = math.log(2.0)


def sequence_log_probs(
    logits: Tensor,
    labels: Tensor,
    *,
    ignore_index: int = -100,
    shift: bool = True,
    average: bool = False,
) -> Tensor:
    r"""Log-probability of each sequence's label tokens under a causal model's logits.

    With ``shift=True`` the logits at position :math:`t` predict the label at
    :math:`t + 1` (a causal language model's next-token convention, as TRL's
    ``get_batch_logps`` and Hugging Face's ``labels`` take them): ``logits[:, :-1]``
    are scored against ``labels[:, 1:]``. With :math:`m_{b,t} = [y_{b,t} \ne`
    ``ignore_index``:math:`]` (the prompt and the padding are ignored):

    .. math::

        \log p_{b,t} = x_{b,t,y_{b,t}} - \log \sum_v e^{x_{b,t,v}}

        s_b = \sum_t m_{b,t} \log p_{b,t}, \qquad
        \bar s_b = \frac{s_b}{\max(1, \sum_t m_{b,t})}

    ``average=False`` returns :math:`s_b` (the sum: what ``dpo`` and ``kto`` take),
    ``average=True`` :math:`\bar s_b` (the length average: what ``simpo`` and ``orpo``
    take, TRL's ``average_log_prob=True``); a sequence with no kept token has 0 either
    way (TRL's average is 0/0 = nan there), with a zero gradient.

    The label's logit is gathered and the log-sum-exp subtracted: no one-hot and no
    ``[B, T, V]`` log-softmax is built or kept for the backward pass (only the logits
    themselves, or their float32 copy for half precision, and ``[B, T]`` values). It
    has no Python branch on tensor values, so it works under ``torch.func`` transforms,
    ``vmap`` over sequences ``[T, V]``/``[T]`` included, and
    ``torch.compile(fullgraph=True)``. An ignored position's logits stay out of the value
    whatever they hold (a ``where``, not a product with the mask); their gradient is 0
    where they are finite (NaN where they are not: the log-sum-exp's backward).

    Args:
        logits: ``[B, T, V]`` (``[T, V]`` for one sequence), floating point.
        labels: token indices ``[B, T]`` (``[T]``), a signed integer dtype, in
            ``[0, V)`` or ``ignore_index``.
        ignore_index: the label of positions left out (Hugging Face's -100).
        shift: score ``logits[:, :-1]`` against ``labels[:, 1:]`` (False: position
            :math:`t` against label :math:`t`, for logits already aligned).
        average: divide each sum by its number of kept tokens.

    Returns:
        ``[B]`` (``[]`` for one sequence), every value :math:`\le 0`. Half-precision
        logits are computed **and returned** in float32: a sum of hundreds of
        bfloat16 log-probabilities would be off by more than the margin between a
        chosen and a rejected answer. Other dtypes are kept.

    Examples:
        >>> import torch, lossfn.functional as LF
        >>> logits = torch.log(torch.tensor([[[0.5, 0.25, 0.25], [0.1, 0.8, 0.1], [1/3, 1/3, 1/3]]]))
        >>> labels = torch.tensor([[-100, 1, 0]])  # position 0 is the prompt
        >>> LF.sequence_log_probs(logits, labels)  # log 0.25 + log 0.1
        tensor([-3.6889])
        >>> LF.sequence_log_probs(logits, labels, average=True)
        tensor([-1.8444])
        >>> LF.sequence_log_probs(logits, labels, shift=False)  # log 0.8 + log(1/3)
        tensor([-1.3218])

    References:
        TRL's ``DPOTrainer``/``CPOTrainer.get_batch_logps`` (``average_log_prob``);
        checked against ``-F.cross_entropy(..., ignore_index=-100, reduction="none")``
        summed over the kept tokens, a per-token loop over ``softmax`` with a one-hot
        sum written out in the test, and end to end through ``dpo`` on a small causal model.
    """
    check_floating(_NAME, "logits", logits)
    original = logits
    logits, labels, one = unbatched(logits, labels, rank=3, probabilities=False)
    if logits.ndim != 3:
        raise fail(_NAME, "logits", "of shape [B, T, V] (or [T, V] for one sequence)", f"shape {shape(original)}")
    check_integer_labels(_NAME, labels, "integer token indices", like=logits)
    if labels.shape != logits.shape[:2]:
        dims = "[" + ", ".join(str(d) for d in logits.shape[:2]) + "]"
        raise fail(_NAME, "labels", f"token indices of shape {dims} for logits {shape(logits)}", f"shape {shape(labels)}")
    if isinstance(ignore_index, bool) or not isinstance(ignore_index, int):
        raise fail(_NAME, "ignore_index", "an integer", repr(ignore_index))
    for arg, value in (("shift", shift), ("average", average)):
        if not isinstance(value, bool):
            raise fail(_NAME, arg, "True or False", repr(value))
    if shift:
        logits, labels = logits[:, :-1], labels[:, 1:]
    x = cast(logits, compute_dtype(logits))
    keep = labels != ignore_index
    index = torch.where(keep, as_index(labels), 0)  # an ignored label indexes token 0, then is left out
    try:
        picked = x.gather(-1, index.unsqueeze(-1)).squeeze(-1)
    except RuntimeError as exc:  # torch's "index 7 is out of bounds for dimension 2 with size 5"
        if torch.compiler.is_compiling() or "out of bounds" not in str(exc):
            raise
        raise fail(_NAME, "labels", f"token indices in [0, {x.shape[-1] - 1}] or the ignore_index", str(exc)) from None
    per_token = keep_where(keep, picked - torch.logsumexp(x, dim=-1))
    total = per_token.sum(-1)
    if average:
        total = total / keep.sum(-1).clamp_min(1).to(total.dtype)
    return total.squeeze(0) if one else total


# -- the preference losses' inputs ---------------------------------------------------


def log1mexp(x: Tensor) -> Tensor:
    r""":math:`\log(1 - e^x)` for :math:`x \le 0`, stable (Mächler's two branches at :math:`-\ln 2`).

    ``log(-expm1(x))`` near 0, where :math:`1 - e^x` cancels; ``log1p(-exp(x))`` below,
    where :math:`e^x` is small. :math:`x` is first clamped to at most minus the
    smallest normal number of its dtype (``-1.2e-38`` in float32): at :math:`x = 0`
    (certainty) the value would be :math:`-\infty`; it is :math:`\log(\text{tiny})`
    (-87.3 in float32, -708.4 in float64) instead, with a zero gradient through the
    clamp, and a positive :math:`x` (not a log-probability) is read the same way. Each
    branch gets only values it is finite on (the double ``where``), so no ``inf · 0``
    reaches a gradient.
    """
    top = torch.tensor(-torch.finfo(x.dtype).tiny, dtype=x.dtype, device=x.device)
    x = torch.minimum(x, top)
    near = x > -_LN2
    safe = torch.full_like(x, -1.0)  # -1 is fine for both branches
    high = torch.log(-torch.expm1(torch.where(near, x, safe)))
    low = torch.log1p(-torch.exp(torch.where(near, safe, x)))
    return torch.where(near, high, low)


def scalar(value: float | Tensor, like: Tensor) -> float | Tensor:
    """A hyperparameter for arithmetic with ``like``: a Python number as is, a 0-d tensor in ``like``'s dtype."""
    if isinstance(value, Tensor):
        return value.to(dtype=like.dtype, device=like.device)
    return float(value)


def per_sequence(
    name: str,
    inputs: Sequence[tuple[str, Any]],
    *,
    what: str = "log-probabilities",
) -> list[Tensor | None]:
    """Checked per-sequence inputs ``[B]`` (``[]`` for one pair), cast to one compute dtype.

    ``inputs`` is ``(argument, value)`` in the loss's order, the model output first; a
    value of ``None`` (an optional input not given) stays ``None``. Each given value is a
    floating tensor of the first one's shape, on its device. The compute dtype is that
    of all of them promoted together, float32 for half precision.
    """
    (first_arg, first), *rest = inputs
    check_floating(name, first_arg, first)
    if first.ndim > 1:
        raise fail(
            name, first_arg, f"{what} of shape [B] (one per sequence) or [] (one pair)",
            f"shape {shape(first)}" + (": per-token values? sum them with sequence_log_probs" if first.ndim == 2 else ""),
        )
    dtype = first.dtype
    for arg, value in rest:
        if value is None:
            continue
        check_floating(name, arg, value)
        check_same_shape(name, first, value, names=(first_arg, arg))  # and on its device
        dtype = torch.promote_types(dtype, value.dtype)
    if dtype in (torch.float16, torch.bfloat16):
        dtype = torch.float32  # compute_dtype's rule, for the promoted dtype
    return [cast(first, dtype), *(None if value is None else cast(value, dtype) for _, value in rest)]


def unpaired_inputs(name: str, policy: Tensor, reference: Tensor, labels: object, kl: object) -> tuple[Any, ...]:
    """KTO's inputs: ``policy``/``reference`` checked as :func:`per_sequence` does, labels (bool,
    integer or float) of their shape, and ``kl``, ``[]`` or their shape, detached, in the compute dtype."""
    pi, ref = per_sequence(name, [("policy", policy), ("reference", reference)])
    if not isinstance(labels, Tensor):
        raise fail(name, "labels", "a torch.Tensor", type(labels).__name__)
    if labels.is_complex():
        raise fail(name, "labels", "1 (desirable) or 0 (undesirable), as bool, integer or float", f"dtype {labels.dtype}")
    check_same_shape(name, policy, labels, names=("policy", "labels"))  # and on its device
    if kl is None:
        return pi, ref, labels, None
    check_floating(name, "kl", kl)
    if kl.ndim != 0 and kl.shape != policy.shape:
        raise fail(name, "kl", f"a 0-d tensor (the batch's estimate) or of the shape of policy {shape(policy)}",
                   f"shape {shape(kl)}")
    check_device(name, "kl", kl, policy, "policy")
    return pi, ref, labels, kl.detach().to(pi.dtype)


# -- the modules' value check --------------------------------------------------------


def validator(
    name: str, *, log_probs: Sequence[str], nonnegative: Sequence[str] = (), binary: str | None = None,
    inputs: Sequence[str],
) -> Callable[..., InputCheck | None]:
    """The ``validate=`` hook of a preference loss: what its module checks before each call.

    Log-probabilities (the inputs named in ``log_probs``) are at most 0 (within
    :data:`LOG_PROB_SLACK`): logits passed by mistake are refused. NLLs (``nonnegative``)
    are at least 0 (within the same slack). The ``binary`` input (KTO's labels) holds
    only 0 and 1 (a NaN is neither). NaN log-probabilities are left to the loss (it
    gives NaN). Facts: one number per checked input (the largest log-probability, the
    smallest NLL, the count of labels outside {0, 1}). Inputs of the wrong kind,
    shape or device, or an empty batch, give no check: the pure function says what is
    wrong (or there is nothing to check).
    """

    def validate(*args: Any, **_: Any) -> InputCheck | None:
        given = dict(zip(inputs, args))
        first = given.get(inputs[0])
        if not isinstance(first, Tensor) or first.numel() == 0:
            return None
        facts, judges = [], []
        for arg, value in given.items():
            if value is None:
                continue
            if not isinstance(value, Tensor) or value.is_complex() or value.device != first.device:
                return None
            if arg == binary:
                if value.shape != first.shape:
                    return None
                facts.append(((value != 0) & (value != 1)).sum().double())
                judges.append((arg, "binary"))
                continue
            if not value.is_floating_point() or arg not in (*log_probs, *nonnegative):
                continue
            if value.numel() == 0:
                return None
            v = value.detach().double()
            if arg in log_probs:
                facts.append(torch.where(torch.isnan(v), -math.inf, v).amax())
                judges.append((arg, "log_prob"))
            else:
                facts.append(torch.where(torch.isnan(v), math.inf, v).amin())
                judges.append((arg, "nonnegative"))
        if not facts:
            return None

        def judge(found: list[float]) -> ValueError | None:
            for (arg, kind), value in zip(judges, found):
                if kind == "binary" and value > 0:
                    n = int(value)
                    return fail(
                        name, arg, "1 (desirable) or 0 (undesirable), as bool, integer or float",
                        f"{n} value{'s' if n > 1 else ''} outside {{0, 1}}",
                    )
                if kind == "log_prob" and value > LOG_PROB_SLACK:
                    return fail(
                        name, arg, f"log-probabilities (<= 0, within {LOG_PROB_SLACK:g}; logits are not)",
                        f"a maximum of {value:g}",
                    )
                if kind == "nonnegative" and value < -LOG_PROB_SLACK:
                    return fail(
                        name, arg, f"a negative log-likelihood (>= 0, within {LOG_PROB_SLACK:g})",
                        f"a minimum of {value:g}",
                    )
            return None

        return InputCheck(torch.stack(facts), judge)

    return validate
