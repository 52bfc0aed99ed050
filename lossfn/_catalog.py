"""The catalog: every loss of ``optax.losses`` and ``torch.nn.functional``, mapped to lossfn.

The mapping is kept here by hand, as plain data: for each source loss, the lossfn
losses that compute it and a short note on what differs in convention. Everything
else in ``docs/catalog.md`` comes from the registry (each lossfn loss's feature types
and inputs, read from :func:`lossfn.get_loss`), so the document cannot drift from the
code: ``tests/test_catalog_doc.py`` checks that the committed file is what
:func:`render` gives, that every optax loss in :data:`OPTAX_LOSSES` and every loss
the installed ``torch.nn.functional`` has gets a row, and that every lossfn name here
is registered.

Regenerate the document, without the CLI::

    .venv/bin/python -m lossfn._catalog > docs/catalog.md

:data:`OPTAX_LOSSES` is the list of optax's public loss names; to compare it with an
installed optax (optax is not a dependency of lossfn)::

    /tmp/refvenv/bin/python scripts/list_optax_losses.py --check
"""

from __future__ import annotations

import dataclasses
import re
import sys

import torch

# importing lossfn._catalog imports lossfn first, which registers every lossfn loss
from lossfn.registry import LossSpec, get_loss, registered
from lossfn.cli import _inputs as cli_inputs  # the one writer of a loss's inputs

#: The optax release :data:`OPTAX_LOSSES` and :data:`OPTAX_ROWS` were taken from.
OPTAX_VERSION = "0.2.8"

#: Every public name of ``optax.losses`` in optax 0.2.8 (``dir(optax.losses)`` without
#: the ``_`` names; all are functions), written by ``scripts/list_optax_losses.py``.
#: Three are helpers rather than losses (``cosine_similarity``, ``make_fenchel_young_loss``,
#: ``smooth_labels``); they have rows too.
OPTAX_LOSSES: tuple[str, ...] = (
    "binary_dice_loss",
    "convex_kl_divergence",
    "cosine_distance",
    "cosine_similarity",
    "ctc_loss",
    "ctc_loss_with_forward_probs",
    "dice_loss",
    "generalized_kl_divergence",
    "hinge_loss",
    "huber_loss",
    "kl_divergence",
    "kl_divergence_with_log_targets",
    "l2_loss",
    "log_cosh",
    "make_fenchel_young_loss",
    "multiclass_generalized_dice_loss",
    "multiclass_hinge_loss",
    "multiclass_perceptron_loss",
    "multiclass_sparsemax_loss",
    "ntxent",
    "perceptron_loss",
    "poly_loss_cross_entropy",
    "ranking_softmax_loss",
    "safe_softmax_cross_entropy",
    "sigmoid_binary_cross_entropy",
    "sigmoid_focal_loss",
    "smooth_labels",
    "softmax_cross_entropy",
    "softmax_cross_entropy_with_integer_labels",
    "sparsemax_loss",
    "squared_error",
    "triplet_margin_loss",
)


@dataclasses.dataclass(frozen=True)
class Row:
    """One source loss: its name there, the lossfn losses that compute it, and what differs."""

    source: str
    lossfn: tuple[str, ...]
    note: str


def _row(source: str, lossfn: str | tuple[str, ...], note: str) -> Row:
    return Row(source, (lossfn,) if isinstance(lossfn, str) else lossfn, " ".join(note.split()))


_NONE = "optax's number is `reduction=\"none\"`."
_PM1 = "labels 0/1 or probabilities, not ±1: pass `(targets + 1) / 2` (the module refuses −1 and says so)."

OPTAX_ROWS: tuple[Row, ...] = (
    _row("binary_dice_loss", (), """No sigmoid (one-channel) Dice: lossfn's `dice` and `tversky` take a softmax
        over C ≥ 2 classes and average every class, background included, so two-class logits `[0, x]` do not
        give optax's foreground-only number. `lovasz_hinge` is lossfn's binary overlap loss (a convex surrogate
        of the IoU, not the Dice). Register your own with `lossfn.register_loss`."""),
    _row("convex_kl_divergence", ("kl_divergence", "poisson_nll"), """Deprecated in optax in favour of
        `generalized_kl_divergence`, the same function: see that row."""),
    _row("cosine_distance", "cosine_distance", f"""`epsilon` → `eps`; always over the last dimension (no `axis`,
        `where`). A zero vector at ε = 0 has distance 1 and a finite gradient (optax: NaN). {_NONE}"""),
    _row("cosine_similarity", "cosine_distance", """Not a loss (a similarity, to maximize):
        `1 - cosine_distance(x, y, eps=epsilon, reduction="none")`."""),
    _row("ctc_loss", "ctc", """Padding masks become lengths: `input_lengths = T - logit_paddings.sum(1)`,
        `label_lengths = S - label_paddings.sum(1)` (both right-padded; optax requires it of the labels); `blank_id` → `blank`.
        optax stands in `log_epsilon = -1e5` for log 0, so an impossible alignment costs a large finite number;
        lossfn gives `inf` (0 with `zero_infinity=True`). A loss that rounds below 0 (optax issue 1771) is 0.
        optax's per-sequence number is `reduction="none"`; lossfn's `"mean"` is torch's (each loss over its
        label length)."""),
    _row("ctc_loss_with_forward_probs", "ctc", """The loss is `ctc(..., reduction="none")` as in the `ctc_loss`
        row; the forward variables optax returns beside it are not exposed (a lossfn loss returns the loss)."""),
    _row("dice_loss", ("tversky", "dice"), """`tversky(logits, labels, alpha=, beta=, smooth=)` (γ = 1);
        optax's defaults α = β = ½ are Dice, `dice(smooth=2·smooth)` (optax smooths (I + s)/(½(P + T) + s)).
        Classes on dim 1 with class-index labels (optax: classes last, one-hot targets). optax's `reduction` is
        over the classes: its "mean" `[B]` is lossfn's `"none"`, its "sum" is C times that. Not carried over:
        `class_weights`, `ignore_background`, `apply_softmax=False`, `axis`, the sigmoid path of one channel."""),
    _row("generalized_kl_divergence", ("kl_divergence", "poisson_nll"), """Takes log-predictions of unnormalized
        measures, KL + Σ(q − p). For distributions (`log_softmax(x)` and targets summing to 1) the extra term is 0:
        `kl_divergence(x, p, reduction="none")`. For unnormalized measures it is
        `poisson_nll(log_q, p, reduction="none").sum(-1)` (log_input, classes last) plus Σ(p log p − p), a
        constant of the predictions."""),
    _row("hinge_loss", "hinge", f"""{_PM1} Gradient 0 at the kink t·x = 1 (jax: half the slope). {_NONE}"""),
    _row("huber_loss", "huber", f"""Same formula and `delta`. optax's `targets=None` is
        `labels=torch.zeros_like(predictions)`. {_NONE}"""),
    _row("kl_divergence", "kl_divergence", """Takes logits (log-softmax inside, classes on dim 1), not
        log-predictions on the last axis (the same for `[B, C]`): `kl_divergence(x, p, reduction="none")` is
        optax's `kl_divergence(log_softmax(x), p)`.
        A zero target gives a zero term and a zero target gradient, also at a
        masked class (optax: NaN, PR 1786)."""),
    _row("kl_divergence_with_log_targets", "kl_divergence", """`kl_divergence(x, log_p, log_target=True,
        reduction="none")`, conventions as in the row above. A −inf log target gives 0 (optax: NaN)."""),
    _row("l2_loss", "mean_squared_error", """optax's `l2_loss` is ½(x − y)²:
        `0.5 * mean_squared_error(x, y, reduction="none")`. `targets=None` → `labels=torch.zeros_like(x)`."""),
    _row("log_cosh", "log_cosh", f"""Same number; small errors keep their relative precision (optax's float32
        `logaddexp(d, -d) - log 2` is 5% off at d = 1e-3, 0 at 1e-4). `targets=None` → zeros. {_NONE}"""),
    _row("make_fenchel_young_loss", ("sparsemax", "entmax15", "binary_sparsemax"), """A constructor taking a max
        function, not a loss: a callable is no config value. lossfn registers its Fenchel–Young losses one by one
        (`softmax_cross_entropy` is the one of logsumexp); write another as a function and register it with
        `lossfn.register_loss`."""),
    _row("multiclass_generalized_dice_loss", "generalized_dice", """Classes on dim 1, class-index labels (optax:
        classes last, one-hot). optax takes the class weights over the whole batch, lossfn per example:
        `"none"[n]` is optax's number for example n alone (equal for B = 1). An absent class gets the largest
        present weight (optax: 1/(0 + 1e-7)). Not carried over: `ignore_background`, `apply_softmax=False`."""),
    _row("multiclass_hinge_loss", "multiclass_hinge", f"""Classes on dim 1 (optax: last axis; the same for
        `[B, C]`); `[C]` is one example, `[B, C, d…]` one loss per position. {_NONE}"""),
    _row("multiclass_perceptron_loss", "multiclass_perceptron", f"""As `multiclass_hinge_loss`. {_NONE}"""),
    _row("multiclass_sparsemax_loss", "sparsemax", f"""Same number (classes last, as optax); `[B, T, V]` tokens
        and `ignore_index` added; a masked class (logit −inf) gives the loss without it. {_NONE}"""),
    _row("ntxent", "nt_xent", """Same formula with labels (pytorch-metric-learning's: the mean over ordered
        positive pairs), the same default temperature 0.07. `labels` are optional (`None`: rows 2i and 2i + 1 are
        the pairs); a batch without positive pairs gives 0 (optax: 0/0, NaN). `"none"` and `"sum"` added (optax:
        the mean only)."""),
    _row("perceptron_loss", "perceptron", f"""{_PM1} Gradient 0 at x = 0 (jax: half the slope). {_NONE}"""),
    _row("poly_loss_cross_entropy", "poly", f"""Class-index labels (optax: one-hot or probabilities on the last
        axis; pass `labels.argmax(-1)`, soft labels have no lossfn form). Default ε 1 (Ludwig's Poly-1; optax 2),
        bounded ε ≥ 0 (optax allows ε < 0). {_NONE}"""),
    _row("ranking_softmax_loss", "ranking_softmax", """`reduce_fn` → `reduction` (`None` → `"none"`, optax's
        default mean → `"mean"`); optax's `weights` → pass `labels * weights`. Labels are not normalized, as in
        optax. A label-0 item with score −inf costs 0 (optax: NaN)."""),
    _row("safe_softmax_cross_entropy", "softmax_cross_entropy", f"""With probability labels. lossfn's
        cross-entropy is safe already: a −inf logit of a class without target mass gives a finite loss and a zero
        gradient there. {_NONE}"""),
    _row("sigmoid_binary_cross_entropy", ("sigmoid_cross_entropy", "binary_weighted_cross_entropy"), f"""Same number,
        elementwise, labels 0/1 or probabilities: `sigmoid_cross_entropy` for set outputs `[B, C]`,
        `binary_weighted_cross_entropy` for binary ones `[B]`. {_NONE}"""),
    _row("sigmoid_focal_loss", "focal", f"""Labels of the logits' shape (binary or multi-hot set). optax's
        default `alpha=None` (no weighting) is 2 × `focal(alpha=0.5)`; a given α is the same; lossfn's default α
        is 0.25 (Ludwig's), γ 2 in both. Label gradients exact at labels 0 and 1 (optax's are not, through
        `logsumexp(b=…)`). {_NONE}"""),
    _row("smooth_labels", "softmax_cross_entropy", """Not a loss, a label transform:
        `softmax_cross_entropy(x, y, label_smoothing=α)` is the cross-entropy against
        `smooth_labels(one_hot(y), α)`, (1 − α)q + α/C, for class indices and probabilities alike."""),
    _row("softmax_cross_entropy", "softmax_cross_entropy", f"""Probability labels (float, the logits' shape;
        the `category_distribution` case). Classes on dim 1 (optax: `axis=-1`; the same for `[B, C]`). optax's
        `where` over classes → a −inf logit for the left-out classes: without target mass there it gives a
        finite loss (0·log 0 = 0), where optax's, given a −inf logit, is NaN (optax #896). {_NONE}"""),
    _row("softmax_cross_entropy_with_integer_labels", "softmax_cross_entropy", f"""Class indices (a signed integer
        dtype). optax's `where` over examples → the label `ignore_index` (0, and out of the mean), over classes →
        a −inf logit. {_NONE}"""),
    _row("sparsemax_loss", "binary_sparsemax", f"""Labels 0/1 as in optax; probabilities give the expected loss
        (the Fenchel–Young loss of a soft target differs by the constant y(1 − y), same gradient). {_NONE}"""),
    _row("squared_error", "mean_squared_error", f"""`targets=None` → `labels=torch.zeros_like(predictions)`.
        {_NONE}"""),
    _row("triplet_margin_loss", "triplet_margin", f"""`norm_degree` → `p`. lossfn uses torch's distance
        ‖a − b + ε‖_p, optax (Σ(a − b)^p + ε)^{{1/p}}: the same for ε = 0 and even p. p ≥ 1, margin ≥ 0. {_NONE}"""),
)

_WEIGHT = "torch's per-element `weight` (torch 2.13)"

TORCH_ROWS: tuple[Row, ...] = (
    _row("binary_cross_entropy", "binary_cross_entropy", """`weight` → `class_weights`, a `[C]` vector along dim 1
        (torch takes any broadcastable shape; multiply `"none"` by it otherwise). A probability outside [0, 1]
        gives `inf` in the pure function and a `ValueError` in the module (torch raises, or asserts on a GPU).
        torch's clamp of each log at −100 kept."""),
    _row("binary_cross_entropy_with_logits", ("sigmoid_cross_entropy", "binary_weighted_cross_entropy"),
         """`pos_weight` → `class_weights` (`[C]`, set outputs) or `positive_class_weight` (a number, binary
        outputs). torch's `weight` (a factor on each element) has no parameter:
        `(loss(x, y, reduction="none") * weight).mean()` is torch's mean. Same number otherwise."""),
    _row("cosine_embedding_loss", "cosine_embedding", """Same argument order; labels ±1, or 0 for −1 (torch gives
        a 0 target another, undocumented meaning). `margin` in [−1, 1]. float16: ε raised so that the gradient at
        a zero vector stays finite (torch: NaN)."""),
    _row("cross_entropy", "softmax_cross_entropy", """`weight` → `class_weights`; `ignore_index` and
        `label_smoothing` the same; class indices or probabilities; the same number for every reduction.
        Probabilities that put no mass on a class masked with a −inf logit give a finite loss (torch: NaN).
        Ludwig's options added (`robust_lambda`, `confidence_penalty`, `class_similarities`)."""),
    _row("ctc_loss", "ctc", """torch takes time-first log-probabilities `[T, B, C]`; lossfn batch-first logits
        `[B, T, C]`, with the log-softmax inside (log-probabilities pass unchanged):
        `ctc(log_probs.transpose(0, 1), targets, input_lengths, target_lengths)`. Padded `[B, S]` targets only
        (not the concatenated 1-D form). `"mean"` is torch's (each loss over its target length). An impossible
        alignment has a zero gradient (torch: NaN); never negative (torch's float32 can give −1e-7); an empty
        batch is accepted (torch refuses it); works under `vmap` (torch's has no rule)."""),
    _row("gaussian_nll_loss", "gaussian_nll", """`(input, target, var)` → `(predictions, labels, variance)`;
        torch's variance shapes (and a float variance) kept. Labels of the predictions' shape (torch
        broadcasts). torch's negative-variance check is the module's, so the function runs under `vmap`."""),
    _row("hinge_embedding_loss", "hinge_embedding", """Labels ±1, or 0 for −1 (torch gives a 0 target another
        meaning)."""),
    _row("huber_loss", "huber", f"""Same `delta` and formula. {_WEIGHT}: `(huber(x, y, reduction="none") *
        weight).mean()` is torch's weighted mean (it divides by N, not Σw). `delta` may be a 0-d tensor."""),
    _row("kl_div", "kl_divergence", """Takes logits (log-softmax inside, classes on dim 1), not
        log-probabilities. `"none"` is per example (torch's elementwise `"none"` summed over the classes);
        lossfn's `"mean"` is torch's `"batchmean"` (torch's elementwise `"mean"` also divides by C, its own
        documented trap). A zero target, a −inf log target and the gradient at a zero target give 0 (torch:
        NaN)."""),
    _row("l1_loss", "mean_absolute_error", f"""Same number, every reduction. {_WEIGHT}: its mean divides by Σw,
        which is `compose.masked(mean_absolute_error)(x, (y, weight))`."""),
    _row("linear_cross_entropy", ("linear_cross_entropy", "softmax_cross_entropy"), """New in torch 2.13:
        `cross_entropy(linear(input, linear_weight, linear_bias), target)`, optionally in chunks so that the
        `[N, C]` logits are never held at once. lossfn's `linear_cross_entropy(hidden, weight, labels, bias)` is
        chunked too, and works under `torch.func` and `compile` (torch's chunked path does not); it has no
        per-class `weight` (use `softmax_cross_entropy(F.linear(input, W, b), target, class_weights=...)`, the
        same number as torch's), and adds `z_loss`, `softcap` and `shift`."""),
    _row("margin_ranking_loss", "margin_ranking", """Same argument order; labels ±1, or 0 for −1; inputs of the
        same shape (torch broadcasts)."""),
    _row("mse_loss", "mean_squared_error", f"""Same number, every reduction. {_WEIGHT}: its mean divides by Σw,
        which is `compose.masked(mean_squared_error)(x, (y, weight))`."""),
    _row("multi_margin_loss", "multi_margin", """`weight` → `class_weights` (also `{name: w}` with a vocabulary);
        torch's number for every reduction; `[B, C, d…]` added. `p` ∈ {1, 2}, `margin` in [0, 1e6]. torch's
        empty-batch mean is an uninitialized number; lossfn's is 0."""),
    _row("multilabel_margin_loss", "multilabel_margin", """Labels multi-hot `[B, C]` (lossfn's set convention),
        not class indices padded with −1; probabilities accepted (the expected loss). torch's empty-batch mean is
        an uninitialized number; lossfn's is 0."""),
    _row("multilabel_soft_margin_loss", "sigmoid_cross_entropy", """torch's loss of an example is the mean over
        its C classes of the binary cross-entropy: its `"none"` is `sigmoid_cross_entropy(x, y,
        reduction="none").mean(1)` (times `weight` before the mean), its `"mean"` is the same number as lossfn's,
        its `"sum"` is lossfn's over C. No loss of its own."""),
    _row("nll_loss", "nll", """`weight` → `class_weights`; `ignore_index` the same; torch's weighted mean (÷ the
        kept labels' weights). `nll(log_softmax(x), y)` is `softmax_cross_entropy(x, y)`."""),
    _row("poisson_nll_loss", "poisson_nll", """Same `log_input`, `full`, `eps`; labels of the predictions' shape.
        The target gradient at y = 0 with `full=True` is finite (torch: NaN)."""),
    _row("smooth_l1_loss", "smooth_l1", """Same `beta`; labels of the predictions' shape (torch broadcasts with a
        warning). β = 0 is the L1 loss; β may be a 0-d tensor."""),
    _row("soft_margin_loss", ("sigmoid_cross_entropy", "binary_weighted_cross_entropy"), """log(1 + e^(−y·x))
        with y = ±1 is the binary cross-entropy of (y + 1)/2: `sigmoid_cross_entropy(x, (y + 1) / 2)` (set) or
        `binary_weighted_cross_entropy` (binary), the same number for every reduction. Or register torch's
        function as it is with `lossfn.register_torch_loss`."""),
    _row("triplet_margin_loss", "triplet_margin", """Same arguments and distance ‖a − b + ε‖_p; p ≥ 1 (torch:
        any), margin ≥ 0 (torch: > 0). `swap` may be a 0-d bool tensor."""),
    _row("triplet_margin_with_distance_loss", "triplet_margin", """With the default distance
        (`pairwise_distance`: p = 2, ε = 1e-6) it is `triplet_margin(a, p, n, margin=, swap=)`. A custom
        `distance_function` is a callable, which no config holds: write a function that passes it to torch's and
        register that with `lossfn.register_torch_loss(name, features, fn)`, which gives it lossfn's contract
        (`margin` and `swap` become config fields)."""),
)

INTRO = """\
# lossfn, optax and torch.nn.functional: the catalog

lossfn has a loss for every loss of `optax.losses` (optax {optax}) and of `torch.nn.functional`
(torch {torch}), written once as a pure function on lossfn's contract, or the table says why
not. Each row names the source loss, the lossfn loss that computes it, the output-feature
types that lossfn loss serves with its positional inputs (both read from the registry), and
what differs in convention.

How to read a note: what holds for every lossfn loss is said once, here, and not in the rows.

- Inputs are positional, model output first (`logits`, `predictions`, `log_probs`, ...), then
  `labels`; every hyperparameter is keyword-only, and a config field of the same name.
- Every loss takes `reduction="mean" | "sum" | "none"`. A torch loss's reduction means the same
  in lossfn unless the note says otherwise. optax's losses return unreduced values: optax's
  number is lossfn's `reduction="none"` (with the shape the note gives).
- The mean of an empty batch is 0 with a zero gradient (torch: NaN). Half-precision inputs are
  computed in float32.
- Binary labels are 0/1 (or probabilities); the pair losses also take torch's ±1.
- Classes are on dimension 1 (`[B, C]`, `[B, C, d1, ...]`), as in torch, unless the note says
  otherwise; optax puts them on the last axis, which is the same for `[B, C]`
  (`x.movedim(-1, 1)` otherwise). lossfn has no `axis=` argument; optax's `where=` becomes a
  −inf logit for a left-out class, `ignore_index` or `compose.masked` for a left-out example.
- torch's deprecated `size_average` and `reduce` are gone.

A source loss with no lossfn name ("–") is one lossfn does not register; the note says why and
what to use. Any other torch loss can be registered as it is with `lossfn.register_torch_loss`.

Generated by `python -m lossfn._catalog > docs/catalog.md` from the mapping in
`lossfn/_catalog.py` and the registry; `tests/test_catalog_doc.py` fails when this file, the
registry, the stored optax list or the installed torch's losses disagree.
"""


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def _markdown(rst: str) -> str:
    """A docstring line in Markdown: each math role as ``$...$``, double backquotes as single ones."""
    return re.sub(r":math:`([^`]*)`", r"$\1$", rst).replace("``", "`")


def _call(spec: LossSpec) -> str:
    """``name(logits, labels)``, an optional input as ``labels=None``: the inputs as ``lossfn list`` writes them."""
    return f"`{spec.name}({cli_inputs(spec)})`"


def _lossfn_cells(names: tuple[str, ...]) -> tuple[str, str]:
    if not names:
        return "–", "–"
    specs = [get_loss(name) for name in names]
    calls = "<br>".join(_call(s) for s in specs)
    features = "<br>".join(", ".join(sorted(f.value for f in s.features)) for s in specs)
    return calls, features


def _table(prefix: str, rows: tuple[Row, ...]) -> list[str]:
    lines = ["| source | lossfn | feature types | conventions |", "|---|---|---|---|"]
    for row in sorted(rows, key=lambda r: r.source):
        calls, features = _lossfn_cells(row.lossfn)
        lines.append(f"| `{prefix}.{row.source}` | {calls} | {features} | {_cell(row.note)} |")
    return lines


def _others() -> list[str]:
    """lossfn's own losses (no plugins) that no row names."""
    mapped = {name for row in OPTAX_ROWS + TORCH_ROWS for name in row.lossfn}
    lines = ["| lossfn | feature types | what it is (its docstring's first line) |", "|---|---|---|"]
    for name, spec in registered().items():
        if name not in mapped and spec.fn.__module__.startswith("lossfn."):
            features = ", ".join(sorted(f.value for f in spec.features))
            lines.append(f"| {_call(spec)} | {features} | {_cell(_markdown(spec.summary))} |")
    return lines


def render() -> str:
    """The text of ``docs/catalog.md``."""
    parts = [
        INTRO.format(optax=OPTAX_VERSION, torch=".".join(torch.__version__.split(".")[:2])),
        f"## optax.losses ({len(OPTAX_ROWS)} names)\n",
        *_table("optax.losses", OPTAX_ROWS),
        "",
        f"## torch.nn.functional ({len(TORCH_ROWS)} losses)\n",
        "Every public function of `torch.nn.functional` that takes a `reduction` argument.\n",
        *_table("torch.nn.functional", TORCH_ROWS),
        "",
        "## lossfn losses with no optax or torch counterpart\n",
        "From Ludwig or the literature; each one's docstring (`lossfn show NAME`) names its reference.\n",
        *_others(),
    ]
    return "\n".join(parts) + "\n"


def main() -> int:
    sys.stdout.write(render())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
