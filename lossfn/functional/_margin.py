r"""Binary margin losses on one logit: hinge, perceptron and the binary sparsemax loss.

optax's ``hinge_loss`` and ``perceptron_loss`` take targets :math:`t \in \{-1, 1\}`;
lossfn's binary labels are 0/1 (bool, integer or float) or probabilities, as in
every lossfn loss: :math:`t = 2y - 1`. A probability :math:`y` gives the expected
loss under a Bernoulli(:math:`y`) label, :math:`y\,\ell(x, 1) + (1 - y)\,\ell(x, 0)`,
the way binary cross-entropy treats a soft target; for 0/1 labels that is the
source's number. The losses are elementwise, as ``binary_cross_entropy_with_logits``:
``reduction="none"`` returns the logits' shape. The module checks that the labels
lie in ``[0, 1]`` and, given ±1 targets, says how to pass them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from lossfn.registry import Feature, InputCheck, Reduction, register_loss

from ._common import cast, check_floating, check_same_shape, compute_dtype, reduce_loss, validate_unit_range

__all__ = ["binary_sparsemax", "hinge", "perceptron", "with_hint"]


def with_hint(hook: Any, misread: Callable[[list[Any]], bool], hint: str) -> Any:
    """A ``validate=`` hook that is ``hook`` with ``hint`` appended to its error when
    ``misread(facts)`` says the labels look like another library's convention."""

    def validate(logits: Tensor, labels: Tensor, *inputs: Any, **params: Any) -> InputCheck | None:
        check = hook(logits, labels, *inputs, **params)
        if check is None:
            return None

        def judge(facts: list[Any]) -> ValueError | None:
            error = check.judge(facts)
            return error if error is None or not misread(facts) else ValueError(f"{error}. {hint}")

        return InputCheck(check.facts, judge)

    return validate


def _validate_binary(name: str) -> Any:
    """``validate_unit_range(name)``, whose error says how to pass ±1 targets (labels in [-1, 1], -1 among them)."""
    return with_hint(
        validate_unit_range(name),
        lambda bounds: bounds[0] == -1 and bounds[1] <= 1,  # the labels' [min, max]
        f"{name} takes 0/1 labels (or probabilities), not ±1 targets as optax does: pass (targets + 1) / 2",
    )


def _binary_inputs(name: str, logits: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
    """Checked logits and labels of one shape, in the compute dtype (float32 for half precision)."""
    check_floating(name, "logits", logits)
    check_same_shape(name, logits, labels)
    x = cast(logits, compute_dtype(logits))
    return x, cast(labels, x.dtype)


def _sparse_plus(x: Tensor) -> Tensor:
    r"""The sparse plus function, :math:`0` for :math:`x \le -1`, :math:`(x + 1)^2 / 4` on
    :math:`(-1, 1)`, :math:`x` for :math:`x \ge 1` (``jax.nn.sparse_plus``).

    Written :math:`(q + 1)^2 / 4 + \max(0, x - 1)` with :math:`q` = ``clamp(x, -1, 1)``:
    one expression, no branch whose unused side could overflow, finite for any finite
    :math:`x`. It is continuously differentiable, with derivative
    :math:`\operatorname{clamp}((x + 1) / 2, 0, 1)`, the sparse sigmoid.
    """
    inner = x.clamp(-1.0, 1.0)
    return (inner + 1).square() / 4 + torch.relu(x - 1)


@register_loss("hinge", [Feature.BINARY], validate=_validate_binary("hinge"))
def hinge(logits: Tensor, labels: Tensor, *, reduction: Reduction = "mean") -> Tensor:
    r"""Hinge loss of a binary classifier: :math:`\max(0, 1 - t x)` with :math:`t = 2y - 1`.

    For logit :math:`x` and label :math:`y \in [0, 1]` (0/1, or a probability):

    .. math::

        \ell = y \max(0, 1 - x) + (1 - y) \max(0, 1 + x)

    which for :math:`y \in \{0, 1\}` is :math:`\max(0, 1 - t x)`, :math:`t = 2y - 1 \in
    \{-1, 1\}` (optax's form); a probability gives the expected hinge loss under a
    Bernoulli(:math:`y`) label. Elementwise: logits of any shape. The gradient at the
    kink (:math:`t x = 1`) is 0 (``jax.numpy.maximum`` gives half the slope there).

    Args:
        logits: any shape (``[B]``, ``[B, ...]``, a scalar).
        labels: same shape; 0/1 (bool, integer or float) or probabilities. **Not ±1**
            as optax's ``targets``: pass ``(targets + 1) / 2``. The module checks that
            the labels lie in ``[0, 1]`` (and, given -1s, says how to convert them).
        reduction: ``"none"`` | ``"mean"`` | ``"sum"``.

    Returns:
        ``"none"``: :math:`\ell`, elementwise (the logits' shape); ``"sum"``: the sum;
        ``"mean"``: the mean over the elements (0 for no element). Same dtype as
        ``logits`` (computed in float32 for half-precision inputs).

    Examples:
        >>> import torch, lossfn.functional as LF
        >>> logits = torch.tensor([2.0, 0.5, -0.5, -2.0])
        >>> labels = torch.tensor([1, 1, 1, 0])
        >>> LF.hinge(logits, labels, reduction="none")
        tensor([0.0000, 0.5000, 1.5000, 0.0000])
        >>> LF.hinge(logits, labels)
        tensor(0.5000)

    References:
        Checked against ``optax.losses.hinge_loss(logits, 2 * labels - 1)`` (values
        and ``jax.grad``), through stored vectors. Not in Ludwig. `Hinge loss
        <https://en.wikipedia.org/wiki/Hinge_loss>`_.
    """
    name = "hinge"
    x, y = _binary_inputs(name, logits, labels)
    loss = y * torch.relu(1 - x) + (1 - y) * torch.relu(1 + x)
    return cast(reduce_loss(loss, reduction, name=name), logits.dtype)


@register_loss("perceptron", [Feature.BINARY], validate=_validate_binary("perceptron"))
def perceptron(logits: Tensor, labels: Tensor, *, reduction: Reduction = "mean") -> Tensor:
    r"""Perceptron loss of a binary classifier: :math:`\max(0, -t x)` with :math:`t = 2y - 1`.

    For logit :math:`x` and label :math:`y \in [0, 1]` (0/1, or a probability):

    .. math::

        \ell = y \max(0, -x) + (1 - y) \max(0, x)

    which for :math:`y \in \{0, 1\}` is :math:`\max(0, -t x)`, :math:`t = 2y - 1`
    (optax's form): 0 for a correct sign, :math:`|x|` for a wrong one. A probability
    gives the expected loss under a Bernoulli(:math:`y`) label. Elementwise. The
    gradient at :math:`x = 0` is 0 (``jax.numpy.maximum`` gives half the slope there).

    Args:
        logits: any shape.
        labels: same shape; 0/1 (bool, integer or float) or probabilities, **not ±1**
            as optax's ``targets``: pass ``(targets + 1) / 2``. The module checks the
            range ``[0, 1]``.
        reduction: ``"none"`` | ``"mean"`` | ``"sum"``.

    Returns:
        ``"none"``: :math:`\ell`, elementwise (the logits' shape); ``"sum"``: the sum;
        ``"mean"``: the mean over the elements (0 for no element). Same dtype as ``logits``.

    Examples:
        >>> import torch, lossfn.functional as LF
        >>> logits = torch.tensor([2.0, -0.5, 1.5])
        >>> labels = torch.tensor([1, 1, 0])
        >>> LF.perceptron(logits, labels, reduction="none")
        tensor([0.0000, 0.5000, 1.5000])

    References:
        Checked against ``optax.losses.perceptron_loss(logits, 2 * labels - 1)``
        (values and ``jax.grad``), through stored vectors. Not in Ludwig.
        `Perceptron <https://en.wikipedia.org/wiki/Perceptron>`_.
    """
    name = "perceptron"
    x, y = _binary_inputs(name, logits, labels)
    loss = y * torch.relu(-x) + (1 - y) * torch.relu(x)
    return cast(reduce_loss(loss, reduction, name=name), logits.dtype)


@register_loss("binary_sparsemax", [Feature.BINARY], validate=validate_unit_range("binary_sparsemax"))
def binary_sparsemax(logits: Tensor, labels: Tensor, *, reduction: Reduction = "mean") -> Tensor:
    r"""Binary sparsemax loss: the Fenchel–Young loss of the sparse sigmoid, on one logit.

    With :math:`\operatorname{sparse\_plus}` (``jax.nn.sparse_plus``: 0 for :math:`x \le -1`,
    :math:`(x + 1)^2 / 4` on :math:`(-1, 1)`, :math:`x` beyond 1), logit :math:`x` and
    label :math:`y \in [0, 1]`:

    .. math::

        \ell = y \operatorname{sparse\_plus}(-x) + (1 - y) \operatorname{sparse\_plus}(x)

    For :math:`y \in \{0, 1\}` this is optax's ``sparsemax_loss``, zero exactly when the
    sparse sigmoid :math:`\operatorname{clamp}((x + 1)/2, 0, 1)` equals the label; its
    gradient is :math:`\operatorname{clamp}((x + 1)/2, 0, 1) - y`. A probability gives
    the expected loss under a Bernoulli(:math:`y`) label (the Fenchel–Young loss with
    the soft target differs from it by the constant :math:`y(1 - y)`: same gradient).
    Continuously differentiable; elementwise.

    Args:
        logits: any shape.
        labels: same shape; 0/1 (bool, integer or float) or probabilities. The module
            checks the range ``[0, 1]``.
        reduction: ``"none"`` | ``"mean"`` | ``"sum"``.

    Returns:
        ``"none"``: :math:`\ell`, elementwise (the logits' shape); ``"sum"``: the sum;
        ``"mean"``: the mean over the elements (0 for no element). Same dtype as ``logits``.

    Examples:
        >>> import torch, lossfn.functional as LF
        >>> logits = torch.tensor([3.0, 0.0, -0.5, 0.5])
        >>> labels = torch.tensor([1, 1, 0, 0])
        >>> LF.binary_sparsemax(logits, labels, reduction="none")
        tensor([0.0000, 0.2500, 0.0625, 0.5625])

    References:
        Blondel, Martins and Niculae, `Learning with Fenchel-Young Losses
        <https://jmlr.org/papers/v21/19-021.html>`_, JMLR 2020 (Sec. 4.4). Checked
        against ``optax.losses.sparsemax_loss`` (values and ``jax.grad``), through
        stored vectors. Not in Ludwig (lossfn's ``sparsemax`` is the multiclass loss).
    """
    name = "binary_sparsemax"
    x, y = _binary_inputs(name, logits, labels)
    loss = y * _sparse_plus(-x) + (1 - y) * _sparse_plus(x)
    return cast(reduce_loss(loss, reduction, name=name), logits.dtype)
