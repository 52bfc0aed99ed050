"""Connectionist temporal classification (CTC) for sequence and text outputs, batch first.

The forward algorithm runs in log space on fixed shapes, so the loss works under
``torch.func`` transforms and ``torch.compile`` (``torch.nn.functional.ctc_loss``
has no ``vmap`` rule): every example has the same ``2S + 1`` states (its labels with
a blank around each, padded past its length), one Python loop runs over the ``T``
time steps, and each example reads its result at its own lengths with ``gather``.

States that no path reaches hold a finite *log-zero*, ``finfo(dtype).min / 4``,
rather than ``-inf``: ``logsumexp`` of all ``-inf`` has a NaN gradient, and a
finite floor keeps every gradient finite without a ``where`` per step. Each step
clamps the states back to that floor, so a masked class (a ``-inf`` logit) cannot
drive them to ``-inf`` either; a final state at the floor is an impossible
alignment, whose loss is ``inf`` (0 with ``zero_infinity``).
"""

from __future__ import annotations

from typing import Annotated, Any

import torch
import torch.nn.functional as F
from msgspec import Meta
from torch import Tensor

from lossfn.registry import Feature, InputCheck, Reduction, register_loss

from ._common import INDEX_DTYPES, as_index, cast, check_device, check_floating, check_integer_labels, compute_dtype
from ._common import fail, reduce_loss, shape

__all__ = ["ctc"]

NAME = "ctc"

Blank = Annotated[int, Meta(ge=0, description="class index of the blank symbol (not a label)")]
ZeroInfinity = Annotated[
    bool, Meta(description="an impossible alignment (an infinite loss) gives 0 and a zero gradient, as torch's")
]


def _log_zero(dtype: torch.dtype) -> float:
    """The floor of the log-space states: far below any reachable value, and twice it is still finite."""
    return torch.finfo(dtype).min / 4


def _lengths(arg: str, value: Any, like: Tensor, size: int | None) -> Tensor:
    """Integer lengths ``[B]`` (``[]`` for one sequence) on ``like``'s device; a list of ints is taken too."""
    if isinstance(value, (list, tuple)) and all(isinstance(v, int) and not isinstance(v, bool) for v in value):
        value = torch.tensor(value, dtype=torch.int64, device=like.device)
    expected = "integer lengths of shape " + ("[]" if size is None else f"[{size}]")
    if not isinstance(value, Tensor):
        raise fail(NAME, arg, f"{expected} (a torch.Tensor)", type(value).__name__)
    if value.dtype not in INDEX_DTYPES:
        raise fail(NAME, arg, f"{expected} of a signed integer dtype", f"dtype {value.dtype}")
    if value.shape != (() if size is None else (size,)):
        raise fail(NAME, arg, f"{expected} for logits {shape(like)}", f"shape {shape(value)}")
    check_device(NAME, arg, value, like, "logits")
    return as_index(value)


def _checked(
    logits: Any, labels: Any, input_lengths: Any, label_lengths: Any
) -> tuple[Tensor, Tensor, Tensor, Tensor, bool]:
    """The inputs with a batch dimension (metadata checks only), and whether one sequence was given."""
    check_floating(NAME, "logits", logits)
    if logits.ndim not in (2, 3):
        raise fail(NAME, "logits", "of shape [B, T, C] (or [T, C] for one sequence)", f"shape {shape(logits)}")
    one = logits.ndim == 2
    check_integer_labels(NAME, labels, "integer label indices", like=logits)
    batch = None if one else logits.shape[0]
    if labels.ndim != (1 if one else 2) or (not one and labels.shape[0] != batch):
        expected = "[S]" if one else f"[{batch}, S]"
        raise fail(NAME, "labels", f"padded label sequences of shape {expected} for logits {shape(logits)}",
                   f"shape {shape(labels)}")
    input_lengths = _lengths("input_lengths", input_lengths, logits, batch)
    label_lengths = _lengths("label_lengths", label_lengths, logits, batch)
    if one:
        return logits[None], labels[None], input_lengths[None], label_lengths[None], True
    return logits, labels, input_lengths, label_lengths, False


def log_likelihood(log_probs: Tensor, labels: Tensor, input_lengths: Tensor, label_lengths: Tensor,
                   blank: Any) -> Tensor:
    r""":math:`\log p(y \mid x)` per sequence, ``[B]``, by the forward algorithm; the floor where impossible.

    ``log_probs`` ``[B, T, C]`` (log-softmax over ``C``), ``labels`` ``[B, S]`` int64,
    lengths ``[B]`` int64 in range (clamped: the pure function reads no values).
    """
    batch, steps, _ = log_probs.shape
    width = 2 * labels.shape[1] + 1
    floor = _log_zero(log_probs.dtype)
    input_lengths = input_lengths.clamp(0, steps)
    label_lengths = label_lengths.clamp(0, labels.shape[1])
    within = torch.arange(labels.shape[1], device=labels.device) < label_lengths[:, None]
    labels = torch.where(within, labels, blank)  # padding: any value there, ignored
    blanks = torch.zeros_like(labels) + blank
    # the extended labels: blank, l_1, blank, l_2, ..., l_S, blank
    extended = torch.stack([blanks, labels], 2).reshape(batch, width - 1)
    extended = torch.cat([extended, torch.zeros_like(label_lengths[:, None]) + blank], 1)
    # a path may skip the blank between two labels that differ (state s - 2 -> s, s odd)
    differs = torch.cat([torch.zeros_like(within[:, :1]), labels[:, 1:] != labels[:, :-1]], 1)
    no = torch.zeros_like(differs)
    skip = torch.cat([torch.stack([no, differs], 2).reshape(batch, width - 1), label_lengths[:, None] < 0], 1)
    closed = log_probs.new_zeros(skip.shape).masked_fill(~skip, floor)  # + floor: no jump into s
    emissions = log_probs.gather(2, extended[:, None, :].expand(batch, steps, width)).clamp_min(floor)
    # before the first step: one path, at a virtual state before state 0 (so that step 0
    # reaches states 0 and 1 by the same recursion, and an empty input keeps this)
    alpha = torch.cat([log_probs.new_zeros(batch, 1), log_probs.new_full((batch, width - 1), floor)], 1)
    history = [alpha]
    for emission in emissions.unbind(1):
        shifted = F.pad(alpha, (2, 0), value=floor)  # shifted[:, s + 2] = alpha[:, s]
        # stay in s, come from s - 1, or jump from s - 2 where allowed; never below the floor
        # (logsumexp, not a chain of logaddexp: logaddexp's second derivative is NaN when its
        # inputs are far apart, as a state at the floor is from a reachable one)
        paths = torch.stack([alpha, shifted[:, 1:-1], shifted[:, :-2] + closed])
        alpha = (torch.logsumexp(paths, 0) + emission).clamp_min(floor)
        history.append(alpha)
    # each sequence's states after its last frame (the start for an empty input)
    final = torch.stack(history, 1).gather(1, input_lengths[:, None, None].expand(batch, 1, width))[:, 0]
    end = 2 * label_lengths  # the last blank; the last label is end - 1 (none for an empty label)
    last = final.gather(1, end[:, None])[:, 0]
    before = final.gather(1, (end - 1).clamp_min(0)[:, None])[:, 0]
    before = torch.where(label_lengths > 0, before, floor)
    return torch.logsumexp(torch.stack([last, before]), 0)


def _validate(logits: Any, labels: Any, input_lengths: Any, label_lengths: Any, **params: Any) -> InputCheck | None:
    """The module's check: labels within their lengths are classes in ``[0, C)`` other than
    the blank; ``0 <= input_lengths <= T`` and ``0 <= label_lengths <= S``.

    Computed with tensor ops (read by the module, the one host sync); inputs of the
    wrong kind or shape give no check, and the pure function says what is wrong.
    """
    try:
        logits, labels, input_lengths, label_lengths, _ = _checked(logits, labels, input_lengths, label_lengths)
    except ValueError:
        return None
    batch, steps, classes = logits.shape
    width = labels.shape[1]
    if batch == 0:
        return None
    blank = params.get("blank", 0)
    labels = as_index(labels)
    within = torch.arange(width, device=labels.device) < label_lengths[:, None]
    large = torch.iinfo(torch.int64).max
    facts = torch.stack([
        (within & (labels == blank)).sum(),
        torch.where(within, labels, large).amin() if width else labels.new_tensor(large),
        torch.where(within, labels, -large).amax() if width else labels.new_tensor(-large),
        *torch.aminmax(input_lengths),
        *torch.aminmax(label_lengths),
    ])
    shown = blank if isinstance(blank, int) else "the blank"

    def judge(values: list[int]) -> ValueError | None:
        blanks, low, high, first_input, last_input, first_label, last_label = values
        if not (0 <= first_label and last_label <= width):
            return fail(NAME, "label_lengths", f"lengths in [0, {width}] (the labels' last dimension)",
                        f"values in [{first_label}, {last_label}]")
        if low <= high and not (0 <= low and high < classes):
            return fail(NAME, "labels", f"class indices in [0, {classes - 1}] within label_lengths",
                        f"values in [{low}, {high}]")
        if blanks:
            return fail(NAME, "labels", f"labels other than the blank ({shown}) within label_lengths",
                        f"{blanks} equal to it")
        if not (0 <= first_input and last_input <= steps):
            return fail(NAME, "input_lengths", f"lengths in [0, {steps}] (the logits' time steps)",
                        f"values in [{first_input}, {last_input}]")
        return None

    return InputCheck(facts, judge)


@register_loss("ctc", [Feature.SEQUENCE, Feature.TEXT], validate=_validate)
def ctc(
    logits: Tensor,
    labels: Tensor,
    input_lengths: Tensor,
    label_lengths: Tensor,
    *,
    blank: Blank = 0,
    zero_infinity: ZeroInfinity = False,
    reduction: Reduction = "mean",
) -> Tensor:
    r"""Connectionist temporal classification: :math:`-\log p(y \mid x)`, :math:`p` summed over all alignments.

    CTC (Graves et al.) trains a model that emits a distribution over :math:`C`
    classes, one of them a *blank*, at each of :math:`T` frames, against a label
    sequence :math:`y` of length :math:`L \le T` without a frame-level alignment:
    :math:`p(y \mid x)` sums the probabilities of all frame paths that give
    :math:`y` once repeats are merged and blanks removed. It is computed by the
    forward algorithm over the extended labels
    :math:`y' = (\varnothing, y_1, \varnothing, \dots, y_L, \varnothing)`
    (:math:`2L + 1` states), in log space, with :math:`\log p_t = \operatorname{log\_softmax}(x_t)`:

    .. math::

        \alpha_t(s) = \log p_t(y'_s) + \operatorname{logsumexp}\bigl(\alpha_{t-1}(s),\,
            \alpha_{t-1}(s - 1),\, \alpha_{t-1}(s - 2)\,[y'_s \ne \varnothing,\ y'_s \ne y'_{s-2}]\bigr)

        \ell_b = -\operatorname{logsumexp}\bigl(\alpha_{T_b - 1}(2L_b),\, \alpha_{T_b - 1}(2L_b - 1)\bigr)

        \text{mean} = \frac{1}{B} \sum_b \frac{\ell_b}{\max(L_b, 1)}, \qquad
        \text{sum} = \sum_b \ell_b

    where :math:`T_b` and :math:`L_b` are example :math:`b`'s ``input_lengths`` and
    ``label_lengths``. ``"mean"`` is torch's: each loss divided by its label length,
    then averaged over the batch (not the mean of ``"none"``). A label that does not
    fit its input (:math:`L_b` plus the repeats of :math:`y` exceeds :math:`T_b`)
    has no alignment: :math:`\ell_b = \infty`, or 0 with a zero gradient when
    ``zero_infinity``. The loss is never negative: where rounding puts a certain
    alignment's log-likelihood a few ulps above 0 (optax issue 1771), the value is
    0, with the unclamped gradient.

    The logits are batch first, like every lossfn loss, and log-softmax is applied
    inside: ``ctc(logits, ...)`` is ``F.ctc_loss(logits.log_softmax(-1).transpose(0, 1),
    ...)``, and log-probabilities may be given too (log-softmax leaves them as they are).
    Written as a fixed-shape loop over the :math:`T` frames (states
    past a label's length and frames past an input's length are computed and left
    out by ``gather``), so ``vmap``, ``grad``, ``jacrev``, ``jacfwd``, ``hessian``
    and ``torch.compile(fullgraph=True)`` work, where ``F.ctc_loss`` has no ``vmap``
    rule. Frames past an input's length are set aside before the log-softmax, so
    whatever they hold (NaN too) never reaches the loss or its gradient.

    Args:
        logits: ``[B, T, C]`` scores (or log-probabilities), or ``[T, C]`` for one sequence.
        labels: ``[B, S]`` padded label sequences (``[S]``; a signed integer dtype):
            row :math:`b`'s first :math:`L_b` entries are its labels, classes in
            :math:`[0, C)` other than ``blank``; entries past :math:`L_b` are ignored
            (any value).
        input_lengths: ``[B]`` (``[]``) frames of each example, in :math:`[0, T]`.
        label_lengths: ``[B]`` (``[]``) labels of each example, in :math:`[0, S]`.
            Both as integer tensors (a list of ints is taken too).
        blank: the blank's class index, in :math:`[0, C)`.
        zero_infinity: an impossible alignment gives 0 (and a zero gradient) instead of ``inf``.
        reduction: ``"none"`` | ``"mean"`` | ``"sum"``.

    The pure function checks shapes and dtypes only. Label values and lengths are
    checked by the module (``lossfn.nn.Ctc``); the function clamps lengths into
    range (where ``F.ctc_loss`` refuses ``input_lengths > T``) and gives a meaningless
    number for a label equal to ``blank``, as ``F.ctc_loss`` does; a label outside
    :math:`[0, C)` fails in ``gather`` (a ``ValueError`` naming ``labels`` on the CPU).

    Returns:
        ``"none"``: :math:`\ell_b`, per sequence: shape ``[B]`` (``[]`` for one
        sequence); ``"sum"``: their sum; ``"mean"``: torch's length-normalized mean
        above (0 for an empty batch, which torch refuses). Same dtype as
        ``logits`` (computed in float32 for float16 and bfloat16).

    Examples:
        >>> import torch, lossfn.functional as LF
        >>> logits = torch.tensor([[[2.0, 0.0, 0.0], [0.0, 2.0, 0.0], [0.0, 0.0, 2.0], [2.0, 0.0, 0.0]]])
        >>> labels = torch.tensor([[1, 2]])
        >>> LF.ctc(logits, labels, torch.tensor([4]), torch.tensor([2]), reduction="none")
        tensor([0.6379])
        >>> LF.ctc(logits, labels, torch.tensor([1]), torch.tensor([2]), reduction="none")  # 2 labels, 1 frame
        tensor([inf])
        >>> LF.ctc(logits, labels, torch.tensor([1]), torch.tensor([2]), zero_infinity=True)
        tensor(0.)

    Differences from ``torch.nn.functional.ctc_loss``: batch-first logits with the
    log-softmax inside (torch takes time-first log-probabilities); padded ``[B, S]``
    labels only (not the concatenated 1-D form); an impossible alignment without
    ``zero_infinity`` has a zero gradient (torch's is NaN); an empty batch is accepted
    (torch refuses it; its mean is 0); a loss that rounds below 0 is 0. From
    ``optax.losses.ctc_loss`` (per-sequence, ``"none"``): optax stands in
    ``log_epsilon = -1e5`` for log 0, so an impossible alignment costs a large finite
    number where lossfn gives ``inf``; lengths replace optax's padding masks.

    References:
        Graves, Fernández, Gomez and Schmidhuber, `Connectionist Temporal
        Classification: Labelling Unsegmented Sequence Data with Recurrent Neural
        Networks <https://www.cs.toronto.edu/~graves/icml_2006.pdf>`_, 2006.
        Checked against ``torch.nn.functional.ctc_loss`` (values for every reduction
        and gradients with respect to the logits, in float64) and, through stored
        test vectors, ``optax.losses.ctc_loss`` (per-sequence values and gradients).
    """
    logits_in = logits
    logits, labels, input_lengths, label_lengths, one = _checked(logits, labels, input_lengths, label_lengths)
    classes = logits.shape[2]
    if isinstance(blank, int) and not blank < classes:
        raise fail(NAME, "blank", f"a class index in [0, {classes - 1}] for logits {shape(logits_in)}", repr(blank))
    if isinstance(blank, Tensor):
        blank = as_index(blank)
    dtype = compute_dtype(logits)
    frames = torch.arange(logits.shape[1], device=logits.device) < input_lengths[:, None]
    # frames past an input's length take no part: whatever they hold (NaN too) stays out
    x = torch.where(frames[..., None], cast(logits, dtype), 0.0)
    log_probs = torch.log_softmax(x, -1)
    likelihood = log_likelihood(log_probs, as_index(labels), input_lengths, label_lengths, blank)
    impossible = likelihood <= _log_zero(dtype) / 2
    loss = -likelihood
    # rounding can put a certain alignment's log-likelihood a few ulps above 0 (optax
    # issue 1771): the value is 0 there, with the gradient of the unclamped loss
    loss = torch.where(loss <= 0, loss - loss.detach(), loss)  # (and +0.0 for -0.0)
    if isinstance(zero_infinity, Tensor):
        fill = torch.where(zero_infinity.to(torch.bool), 0.0, torch.inf).to(dtype)
    else:
        fill = 0.0 if zero_infinity else torch.inf
    loss = torch.where(impossible, fill, loss)
    if reduction == "mean":  # torch's: each sequence's loss divided by its label length (at least 1)
        # the length the likelihood used (clamped into [0, S], as there), at least 1
        loss = loss / label_lengths.clamp(1, max(labels.shape[-1], 1)).to(dtype)
    if one:
        loss = loss[0]
    return cast(reduce_loss(loss, reduction, name=NAME), logits_in.dtype)
