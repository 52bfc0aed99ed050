"""lossfn: loss functions for PyTorch, written as pure functions.

Each loss is a pure function in :mod:`lossfn.functional`; its config
(:mod:`lossfn.schemas`), module (:mod:`lossfn.nn`), JSON Schema and CLI page are
derived from its signature.
"""

from lossfn import functional
from lossfn.functional import register_torch_loss
from lossfn.registry import AsTensor, Feature, LossSpec, Reduction
from lossfn.registry import DuplicateLossError, LossContractError, UnknownLossError
from lossfn.registry import default_loss, get_loss, losses_for, register_loss, registered
