"""The pure losses: ``(model_output, target, [more inputs], *, params..., reduction="mean") -> Tensor``.

One private module per loss family; each loss registers itself with
``@register_loss`` and is re-exported here. A loss registered elsewhere (a plugin,
a notebook cell) is reachable here too, as ``lossfn.functional.<name>``.
"""

from typing import Any

from lossfn.registry import get_loss as _get_loss
from lossfn.registry import registered as _registered

from ._anomaly import deep_sad
from ._anomaly import deep_svdd
from ._anomaly import drocc
from ._asymmetric import asymmetric
from ._binary import binary_weighted_cross_entropy
from ._binary import sigmoid_cross_entropy
from ._common import reduce_loss
from ._contrastive import nt_xent
from ._ctc import ctc
from ._divergence import jensen_shannon
from ._divergence import kl_divergence
from ._divergence import knowledge_distillation
from ._entmax import entmax15
from ._entmax import sparsemax
from ._entmax_math import entmax15_probabilities
from ._entmax_math import sparsemax_probabilities
from ._focal import focal
from ._focal import poly
from ._likelihood import binary_cross_entropy
from ._likelihood import nll
from ._linear_ce import linear_cross_entropy
from ._log_probs import sequence_log_probs
from ._lovasz_hinge import lovasz_hinge
from ._margin import binary_sparsemax
from ._margin import hinge
from ._margin import perceptron
from ._margin_multiclass import multi_margin
from ._margin_multiclass import multiclass_hinge
from ._margin_multiclass import multiclass_perceptron
from ._margin_multiclass import multilabel_margin
from ._open_set import entropic_open_set
from ._open_set import objectosphere
from ._ordinal import corn
from ._overlap import generalized_dice
from ._overlap import jaccard
from ._overlap import tversky
from ._pairs import cosine_distance
from ._pairs import cosine_embedding
from ._pairs import hinge_embedding
from ._pairs import margin_ranking
from ._pairs import triplet_margin
from ._preference import dpo
from ._preference import kto
from ._preference import orpo
from ._preference import simpo
from ._ranking import ranking_softmax
from ._regression import huber
from ._regression import mean_absolute_error
from ._regression import mean_absolute_percentage_error
from ._regression import mean_squared_error
from ._regression import root_mean_squared_error
from ._regression import root_mean_squared_percentage_error
from ._regression_extra import gaussian_nll
from ._regression_extra import poisson_nll
from ._regression_extra import quantile
from ._robust_regression import general_robust
from ._robust_regression import log_cosh
from ._robust_regression import smooth_l1
from ._segmentation import dice
from ._segmentation import lovasz_softmax
from ._sequence import next_token_softmax_cross_entropy
from ._sequence import sequence_softmax_cross_entropy
from ._softmax import softmax_cross_entropy
from ._supcon import supervised_contrastive
from ._tempered import bi_tempered_binary_logistic_loss
from ._tempered import bi_tempered_logistic_loss
from ._tempered_math import exp_t
from ._tempered_math import log_t
from ._tempered_math import tempered_sigmoid
from ._tempered_math import tempered_softmax
from ._torch_route import register_torch_loss

__all__ = [
    "asymmetric",
    "bi_tempered_binary_logistic_loss",
    "bi_tempered_logistic_loss",
    "binary_cross_entropy",
    "binary_sparsemax",
    "binary_weighted_cross_entropy",
    "corn",
    "cosine_distance",
    "cosine_embedding",
    "ctc",
    "deep_sad",
    "deep_svdd",
    "dice",
    "dpo",
    "drocc",
    "entmax15",
    "entmax15_probabilities",
    "entropic_open_set",
    "exp_t",
    "focal",
    "gaussian_nll",
    "general_robust",
    "generalized_dice",
    "hinge",
    "hinge_embedding",
    "huber",
    "jaccard",
    "jensen_shannon",
    "kl_divergence",
    "knowledge_distillation",
    "kto",
    "linear_cross_entropy",
    "log_cosh",
    "log_t",
    "lovasz_hinge",
    "lovasz_softmax",
    "margin_ranking",
    "mean_absolute_error",
    "mean_absolute_percentage_error",
    "mean_squared_error",
    "multi_margin",
    "multiclass_hinge",
    "multiclass_perceptron",
    "multilabel_margin",
    "next_token_softmax_cross_entropy",
    "nll",
    "nt_xent",
    "objectosphere",
    "orpo",
    "perceptron",
    "poisson_nll",
    "poly",
    "quantile",
    "ranking_softmax",
    "reduce_loss",
    "register_torch_loss",
    "root_mean_squared_error",
    "root_mean_squared_percentage_error",
    "sequence_log_probs",
    "sequence_softmax_cross_entropy",
    "sigmoid_cross_entropy",
    "simpo",
    "smooth_l1",
    "softmax_cross_entropy",
    "sparsemax",
    "sparsemax_probabilities",
    "supervised_contrastive",
    "tempered_sigmoid",
    "tempered_softmax",
    "triplet_margin",
    "tversky",
]


def __getattr__(name: str) -> Any:
    if name in _registered():
        return _get_loss(name).fn
    raise AttributeError(f"module 'lossfn.functional' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_registered()))
