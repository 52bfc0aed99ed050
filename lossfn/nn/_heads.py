"""Output heads that own their weight and return the loss: ``lm_head`` and its loss in one module."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor
from torch.nn import Parameter

from lossfn.registry import get_loss

__all__ = ["LinearCrossEntropyHead"]


class LinearCrossEntropyHead(torch.nn.Module):
    """A language model's output layer and its cross-entropy, without the ``[N, V]`` logits.

    Owns ``weight`` ``[vocab_size, in_features]`` (and ``bias`` ``[vocab_size]``), as
    ``nn.Linear(in_features, vocab_size)`` does, and ``forward(hidden, labels)`` returns
    :func:`lossfn.functional.linear_cross_entropy` of them: in a training loop it
    replaces ``lm_head`` followed by ``F.cross_entropy(logits, labels)``, with the same
    loss and gradients and a fraction of the memory. :meth:`logits` gives the logits
    for generation and evaluation (capped as the loss sees them).

    Args:
        in_features: ``H``, the width of the hidden states.
        vocab_size: ``V``, the number of classes (tokens).
        bias: whether the layer has a bias (language models mostly have none).
        reduction, validate_inputs, **options: those of the registry's module
            ``lossfn.nn.LinearCrossEntropy`` (which holds them, as ``self.loss``):
            ``ignore_index``, ``label_smoothing``, ``z_loss``, ``softcap``, ``shift``,
            ``chunk_size``; checked there (an unknown or out-of-range option is an error).
        device, dtype: of the parameters, as ``nn.Linear``'s.

    Examples:
        >>> import torch
        >>> from lossfn.nn._heads import LinearCrossEntropyHead
        >>> _ = torch.manual_seed(0)
        >>> head = LinearCrossEntropyHead(16, 100, shift=True, z_loss=1e-4)
        >>> head
        LinearCrossEntropyHead(
          in_features=16, vocab_size=100, bias=False
          (loss): LinearCrossEntropy(z_loss=0.0001, shift=True, reduction='mean')
        )
        >>> hidden, tokens = torch.randn(2, 5, 16), torch.randint(0, 100, (2, 5))
        >>> head(hidden, tokens).shape, head.logits(hidden).shape
        (torch.Size([]), torch.Size([2, 5, 100]))
    """

    def __init__(
        self,
        in_features: int,
        vocab_size: int,
        bias: bool = False,
        *,
        reduction: str = "mean",
        validate_inputs: bool = True,
        device: Any = None,
        dtype: torch.dtype | None = None,
        **options: Any,
    ) -> None:
        super().__init__()
        self.in_features, self.vocab_size = in_features, vocab_size
        factory = {"device": device, "dtype": dtype}
        self.weight = Parameter(torch.empty(vocab_size, in_features, **factory))
        if bias:
            self.bias = Parameter(torch.empty(vocab_size, **factory))
        else:
            self.register_parameter("bias", None)
        self.loss = get_loss("linear_cross_entropy").module(
            **options, reduction=reduction, validate_inputs=validate_inputs
        )
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """``nn.Linear``'s initialization: uniform in ``±1/sqrt(in_features)``."""
        torch.nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            bound = 1 / math.sqrt(self.in_features) if self.in_features > 0 else 0
            torch.nn.init.uniform_(self.bias, -bound, bound)

    @classmethod
    def from_linear(cls, linear: torch.nn.Linear, **kwargs: Any) -> LinearCrossEntropyHead:
        """A head over an existing ``nn.Linear``'s parameters: shared, not copied (tied embeddings stay tied).

        ``kwargs`` are the loss's options (and ``reduction``, ``validate_inputs``); the
        parameters keep the linear's own device and dtype, so ``device`` and ``dtype`` are refused.
        """
        placed = sorted({"device", "dtype"} & kwargs.keys())
        if placed:
            raise TypeError(
                f"LinearCrossEntropyHead.from_linear: {', '.join(placed)} cannot be given: the head shares "
                "the linear's parameters, on their device and in their dtype (move the linear instead)"
            )
        head = cls(linear.in_features, linear.out_features, bias=False, device="meta", **kwargs)
        head.weight = linear.weight
        head.bias = linear.bias
        return head

    def forward(self, hidden: Tensor, labels: Tensor) -> Tensor:
        """The loss of ``hidden`` ``[..., H]`` on ``labels`` ``[...]``, reduced as ``reduction`` says."""
        return self.loss(hidden, self.weight, labels, self.bias)

    def logits(self, hidden: Tensor) -> Tensor:
        """``hidden @ weight.T + bias``, soft-capped when the loss caps them: ``[..., V]``."""
        logits = torch.nn.functional.linear(hidden, self.weight, self.bias)
        cap = self.loss.softcap
        return logits if cap is None else cap * torch.tanh(logits / cap)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, vocab_size={self.vocab_size}, bias={self.bias is not None}"
