"""Loss trees: one loss per output of a multi-output model, and small pure combinators.

A model with several heads returns a *pytree* of outputs (a dict, a tuple, a list,
a nesting of them, or a dataclass registered with optree); the targets share its
structure. A loss tree gives each leaf a loss and a weight and returns the
weighted total together with every leaf's own loss, as a tree of the same
structure -- Ludwig's combined loss over output features, where each feature's
loss config carries its ``weight``::

    >>> import torch
    >>> import lossfn
    >>> from lossfn import compose
    >>> from lossfn import functional as LF
    >>> losses = compose.tree({
    ...     "price": compose.term(LF.mean_squared_error, weight=0.5),
    ...     "label": compose.term("softmax_cross_entropy", label_smoothing=0.1),
    ... })
    >>> outputs = {"price": torch.zeros(4), "label": torch.zeros(4, 3)}
    >>> targets = {"price": torch.ones(4), "label": torch.tensor([0, 1, 2, 0])}
    >>> total, parts = losses(outputs, targets)
    >>> sorted(parts), round(total.item(), 4)   # 0.5 * 1.0 + 1.0 * log(3)
    (['label', 'price'], 1.5986)

The tree is a pure function of ``(outputs, targets)``, so ``torch.func.grad``,
``vmap`` and ``jacrev`` work through it (``grad(losses, has_aux=True)`` returns
the gradient of the total and the parts). :meth:`LossTree.module` gives the
``nn.Module`` form for training loops, whose children are the leaf modules.

Trees come from code (:func:`tree`, each leaf a pure function, a module, a config
or a registered name, see :func:`term`) or from a config (:func:`from_config`)::

    outputs:
      price: {type: huber, delta: 1.0, weight: 0.5}
      label: {type: softmax_cross_entropy, label_smoothing: 0.1}

Structure is read with optree in the namespace :data:`NAMESPACE` (``"lossfn"``),
which also sees globally registered node types: register a dataclass of outputs
with ``@optree.dataclasses.dataclass(namespace=compose.NAMESPACE)``.
"""

from __future__ import annotations

import dataclasses
import functools
import operator
import os
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import msgspec
import optree
import torch
from torch import Tensor

from lossfn.functional import reduce_loss
from lossfn.nn import DerivedLoss
from lossfn.registry import LossSpec, check_reduction, get_loss, registered
from lossfn.schemas import WEIGHT, LossConfigError, config_problems, decode_config, read_document, spec_of
from lossfn.schemas._io import path_of

__all__ = [
    "NAMESPACE",
    "LossTree",
    "LossTreeModule",
    "Term",
    "TermModule",
    "detach_labels",
    "from_config",
    "is_tree_document",
    "load_config",
    "masked",
    "term",
    "tree",
    "tree_problems",
    "weighted_sum",
]

#: The optree namespace lossfn flattens trees in (global registrations are seen too).
NAMESPACE = "lossfn"

PyTree = Any
LossFn = Callable[..., Tensor]
Path = tuple[Any, ...]


# -- paths and structure -----------------------------------------------------


def _path(path: Iterable[Any], root: str = "$") -> str:
    """``("heads", 0, "price")`` -> ``$.heads[0].price`` (the JSON-path form of config errors)."""
    return functools.reduce(path_of, path, root)




def _flatten(tree: PyTree) -> tuple[list[Any], optree.PyTreeSpec]:
    return optree.tree_flatten(tree, none_is_leaf=True, namespace=NAMESPACE)


def _node(value: Any) -> tuple[dict[Any, Any], type] | None:
    """``({entry: child}, kind)`` of a pytree node, or None for a leaf."""
    try:
        children, _, entries, _ = optree.tree_flatten_one_level(value, none_is_leaf=True, namespace=NAMESPACE)
    except ValueError:
        return None
    kind = Mapping if isinstance(value, Mapping) else type(value)
    return dict(zip(entries, children)), kind


def _describe(treespec: optree.PyTreeSpec) -> str:
    if issubclass(treespec.type, Mapping):
        return f"a mapping with keys {', '.join(map(repr, treespec.entries()))}"
    return f"a {treespec.type.__name__} of {treespec.num_children}"


def _mismatches(treespec: optree.PyTreeSpec, value: Any, path: Path) -> Iterable[str]:
    """Every place where ``value`` does not have the structure ``treespec`` (a prefix) has."""
    if treespec.is_leaf():
        return
    node = _node(value)
    kind = Mapping if issubclass(treespec.type, Mapping) else treespec.type
    if node is None or node[1] is not kind:
        yield f"{_path(path)} is {type(value).__name__}, expected {_describe(treespec)}"
        return
    children = node[0]
    expected = dict(zip(treespec.entries(), treespec.children()))
    missing = [entry for entry in expected if entry not in children]
    extra = [entry for entry in children if entry not in expected]
    if missing:
        yield "missing " + ", ".join(_path((*path, entry)) for entry in missing)
    if extra:
        yield "extra " + ", ".join(_path((*path, entry)) for entry in extra)
    for entry, child in expected.items():
        if entry in children:
            yield from _mismatches(child, children[entry], (*path, entry))


def _flatten_like(treespec: optree.PyTreeSpec, value: Any, what: str, reference: str = "the loss tree") -> list[Any]:
    """The subtrees of ``value`` at the leaves of ``treespec``, or a ValueError naming every mismatch."""
    try:
        return treespec.flatten_up_to(value)
    except ValueError:
        pass
    problems = list(_mismatches(treespec, value, ()))
    if problems:
        raise ValueError(f"{what} do not match {reference}: {'; '.join(problems)}")
    # optree is stricter than the walk about the kind of mapping; the walk accepts any
    leaves: list[Any] = []
    _collect(treespec, value, leaves)
    return leaves


def _collect(treespec: optree.PyTreeSpec, value: Any, leaves: list[Any]) -> None:
    """Append the subtrees of ``value`` at the leaves of ``treespec`` (structures already match)."""
    if treespec.is_leaf():
        leaves.append(value)
        return
    children = _node(value)[0]
    for entry, child in zip(treespec.entries(), treespec.children()):
        _collect(child, children[entry], leaves)


def _total(parts: Iterable[Tensor], weights: Iterable[float | Tensor]) -> Tensor:
    return functools.reduce(operator.add, (weight * part for weight, part in zip(weights, parts, strict=True)))


# -- leaves ---------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, eq=False, repr=False)
class Term:
    """One leaf of a loss tree: a pure loss, its hyperparameters and its weight.

    Calling it is ``fn(*inputs, **params)`` (``fn(output, target)`` in a tree): the
    weight is *not* applied (the tree applies it to the total). Build one with :func:`term`.

    Attributes:
        fn: the pure loss ``fn(*inputs, **params) -> Tensor``.
        params: keyword arguments to ``fn`` (numbers, lists or tensors, ``reduction``).
        weight: the leaf's weight in the total (a number or a 0-d tensor).
        spec: the registered loss ``fn`` is, if any.
        module: the ``nn.Module`` the term was made from, if any (the module form reuses it).
    """

    fn: LossFn
    params: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    weight: float | Tensor = 1.0
    spec: LossSpec | None = None
    module: torch.nn.Module | None = None

    @property
    def name(self) -> str:
        """The registered name, or the function's name."""
        if self.spec is not None:
            return self.spec.name
        return getattr(self.fn, "__name__", type(self.fn).__name__)

    def __call__(self, *inputs: Any) -> Tensor:
        return self.fn(*inputs, **self.params)

    def as_module(self) -> torch.nn.Module:
        """The module form: the module it came from, the generated module of a
        registered loss, or a :class:`TermModule` around the function."""
        if isinstance(self.module, DerivedLoss):
            return self.module
        if self.module is None and self.spec is not None and not isinstance(self.weight, Tensor):
            return self.spec.module(**self.params, weight=self.weight)
        return TermModule(self.module if self.module is not None else self.fn, self.params, self.weight)

    def __repr__(self) -> str:
        fields = [self.name if self.module is None else repr(self.module)]
        defaults = {} if self.spec is None else self.spec.defaults | {"reduction": "mean"}
        fields += [f"{key}={value!r}" for key, value in self.params.items() if not _is_default(value, key, defaults)]
        if not _is_default(self.weight, "weight", {"weight": 1.0}):
            fields.append(f"weight={self.weight!r}")
        return f"Term({', '.join(fields)})"


def _is_default(value: Any, key: str, defaults: Mapping[str, Any]) -> bool:
    return key in defaults and not isinstance(value, Tensor) and value == defaults[key]


def _spec_of_function(fn: Any) -> LossSpec | None:
    return next((spec for spec in registered().values() if spec.fn is fn), None)


def _checked(spec: LossSpec, params: Mapping[str, Any]) -> dict[str, Any]:
    """``params`` checked against the loss's config: names, and the bounds of plain values.

    Tensor values are not read (that would be a host sync); ``reduction`` is
    checked against the three reductions.
    """
    params = dict(params)
    check_reduction(spec.name, params.get("reduction", "mean"))
    unknown = [key for key, value in params.items() if isinstance(value, Tensor) and key not in spec.defaults]
    if unknown:
        raise LossConfigError(f"{spec.name}: Object contains unknown field `{unknown[0]}`")
    plain = {key: value for key, value in params.items() if key != "reduction" and not isinstance(value, Tensor)}
    try:
        msgspec.convert(plain, type=spec.config)
    except msgspec.ValidationError as exc:
        raise LossConfigError(f"{spec.name}: {exc}") from None
    return params


def _checked_weight(weight: Any) -> Any:
    """A weight given as a Python number is a config's weight: a number >= 0 (a tensor is not read)."""
    if weight is None or isinstance(weight, Tensor):
        return weight
    try:
        return msgspec.convert(weight, type=WEIGHT)
    except msgspec.ValidationError as exc:
        raise LossConfigError(f"term(): weight: {exc} - at `$.weight`") from None


def _config_params(config: msgspec.Struct, spec: LossSpec) -> dict[str, Any]:
    return {param.name: getattr(config, param.name) for param in spec.params}


def term(loss: Any, *, weight: float | Tensor | None = None, **params: Any) -> Term:
    """Make a loss-tree leaf from a loss in any of its forms.

    Args:
        loss: one of

            - a pure function ``fn(logits, labels, **params)``: a registered loss
              (its ``params`` are checked against its config, so a misspelt or
              out-of-range value fails here), a combinator's result or any callable;
            - a registered name or alias (``"huber"``), the same as its function;
            - a config (an instance, or a mapping with ``type``), decoded with
              :func:`lossfn.decode_config`; its ``weight`` is the leaf's weight;
            - a module: a generated ``lossfn.nn`` module (its parameters and its
              ``weight`` are the leaf's) or any ``nn.Module`` loss;
            - a :class:`Term`, with ``weight`` and ``params`` replaced or added.
        weight: the leaf's weight (default 1.0): a number >= 0 (checked) or a 0-d
            tensor (not read). A config or a generated module carries its own
            weight and parameters: pass neither for those.
        **params: hyperparameters of a function (numbers or 0-d tensors), ``reduction``.

    Raises:
        LossConfigError: a parameter is unknown to the loss or out of its bounds,
            or the weight is negative.
        TypeError: ``loss`` is none of the above.
    """
    weight = _checked_weight(weight)
    if isinstance(loss, Term):
        merged = dict(loss.params) | params
        if loss.spec is not None:
            merged = _checked(loss.spec, merged)
        return dataclasses.replace(loss, params=merged, weight=loss.weight if weight is None else weight)
    if isinstance(loss, str):
        loss = get_loss(loss).fn
    if isinstance(loss, Mapping | msgspec.Struct | DerivedLoss):
        if weight is not None or params:
            given = sorted([*params, *(["weight"] if weight is not None else [])])
            raise TypeError(
                f"term(): a {type(loss).__name__} carries its own weight and parameters; "
                f"set them in it, not as arguments (got {given})"
            )
        if isinstance(loss, DerivedLoss):
            params = loss.params() | {"reduction": loss.reduction}
            return Term(loss.spec.fn, params, loss.weight, loss.spec, module=loss)
        config = decode_config(loss)
        spec = spec_of(config)
        return Term(spec.fn, _config_params(config, spec), config.weight, spec)
    if isinstance(loss, torch.nn.Module):
        return Term(loss, params, 1.0 if weight is None else weight, module=loss)
    if callable(loss):
        spec = _spec_of_function(loss)
        if spec is not None:
            params = _checked(spec, params)
        return Term(loss, params, 1.0 if weight is None else weight, spec)
    raise TypeError(
        "term(): expected a loss function, a registered name, a config, a module or a Term; "
        f"got {type(loss).__name__}"
    )


def _is_config_mapping(value: Any) -> bool:
    return isinstance(value, Mapping) and isinstance(value.get("type"), str)


# -- the tree ------------------------------------------------------------------


class LossTree:
    """A pure loss over a pytree of outputs: ``total, parts = losses(outputs, targets)``.

    ``parts`` has the loss tree's structure and holds each leaf's own loss
    (unweighted); ``total`` is :math:`\\sum_i w_i \\cdot \\text{part}_i`. Outputs and
    targets must have the tree's structure down to its leaves; below a leaf they
    may hold anything the leaf's loss takes (a ``(labels, mask)`` pair for a
    :func:`masked` loss, say). A mismatch is a ``ValueError`` naming every missing
    and extra key by its path (``$.heads.price``).

    Build it with :func:`tree` or :func:`from_config`.
    """

    __slots__ = ("_terms", "_treespec", "_paths")

    def __init__(self, losses: PyTree) -> None:
        if isinstance(losses, LossTree):
            losses = losses.terms
        paths, leaves, treespec = optree.tree_flatten_with_path(
            losses, is_leaf=_is_config_mapping, none_is_leaf=True, namespace=NAMESPACE
        )
        if not leaves:
            raise ValueError("a loss tree needs at least one loss; got an empty tree")
        terms = []
        for path, leaf in zip(paths, leaves):
            where = _path(path)
            if leaf is None:
                raise TypeError(f"loss tree: no loss at {where} (None); leave the output out instead")
            try:
                terms.append(term(leaf))
            except LossConfigError as exc:
                raise exc.under(where) from None
            except TypeError as exc:
                raise TypeError(f"loss tree at {where}: {exc}") from None
        self._terms: tuple[Term, ...] = tuple(terms)
        self._treespec = treespec
        self._paths: tuple[Path, ...] = tuple(paths)

    @property
    def terms(self) -> PyTree:
        """The leaves as :class:`Term` objects, in the tree's structure."""
        return self._treespec.unflatten(self._terms)

    @property
    def weights(self) -> PyTree:
        """Each leaf's weight, in the tree's structure."""
        return self._treespec.unflatten([t.weight for t in self._terms])

    @property
    def treespec(self) -> optree.PyTreeSpec:
        """The tree's structure (``optree.PyTreeSpec``; its leaves are the losses)."""
        return self._treespec

    def __call__(self, outputs: PyTree, targets: PyTree) -> tuple[Tensor, PyTree]:
        """The weighted total and the per-leaf losses.

        Args:
            outputs: the model's outputs, a pytree with the tree's structure
                (e.g. ``{"price": [B], "label": [B, C]}``).
            targets: the targets, same structure (``{"price": [B], "label": [B]}``).

        Returns:
            ``(total, parts)``: ``parts`` has the tree's structure, each leaf the
            leaf loss's value (a scalar with the default ``reduction="mean"``);
            ``total`` is their weighted sum (their broadcast shape).
        """
        outs = _flatten_like(self._treespec, outputs, "outputs")
        tgts = _flatten_like(self._treespec, targets, "targets")
        parts = []
        for path, leaf, output, target in zip(self._paths, self._terms, outs, tgts):
            try:
                parts.append(leaf(output, target))
            except Exception as exc:
                exc.add_note(f"in the loss tree at {_path(path)} ({leaf!r})")
                raise
        total = _total(parts, (t.weight for t in self._terms))
        return total, self._treespec.unflatten(parts)

    def module(self) -> LossTreeModule:
        """The ``nn.Module`` form (:class:`LossTreeModule`) of this tree."""
        return LossTreeModule(self)

    def __repr__(self) -> str:
        return f"LossTree({self.terms!r})"


def tree(losses: PyTree) -> LossTree:
    """A loss tree from a pytree of losses (each leaf anything :func:`term` takes).

    Mappings, tuples, lists and registered dataclasses are inner nodes; a
    mapping with a string ``type`` is a loss config (a leaf).

    >>> import lossfn
    >>> lossfn.compose.tree({
    ...     "price": "mean_squared_error",
    ...     "label": {"type": "softmax_cross_entropy", "weight": 2.0},
    ... })
    LossTree({'price': Term(mean_squared_error), 'label': Term(softmax_cross_entropy, weight=2.0)})
    """
    return LossTree(losses)


def from_config(data: Mapping[str, Any]) -> LossTree:
    """A loss tree from a config: ``{"outputs": {name: loss config, ...}}``.

    Each output's loss config is decoded through the tagged union of all loss
    configs (:func:`lossfn.decode_config`), its ``weight`` is the output's weight.
    An output's name must be able to name a child of :class:`LossTreeModule`: not
    empty, no ``"."``, and not an attribute of a module (``"forward"``, ``"training"``).

    Args:
        data: the parsed document (from JSON, YAML or TOML).

    Raises:
        LossConfigError: with the JSON path of the fault, ``$.outputs.price.delta``.
    """
    problems = tree_problems(data, first_only=True)
    if problems:
        raise problems[0]
    return LossTree({name: term(decode_config(config)) for name, config in data["outputs"].items()})


def is_tree_document(data: Any) -> bool:
    """Whether a parsed document is a loss tree (``{"outputs": ...}``) rather than a loss config."""
    return isinstance(data, Mapping) and "outputs" in data and "type" not in data


def tree_problems(data: Any, *, first_only: bool = False) -> list[LossConfigError]:
    """Every fault of a loss-tree document (``[]``: valid), each with its JSON path."""
    problems: list[LossConfigError] = []
    if not isinstance(data, Mapping):
        return [LossConfigError(f"Expected a loss tree (an object with `outputs`), got `{type(data).__name__}`", "$")]
    for key in data:
        if key != "outputs":
            problems.append(LossConfigError(f"Object contains unknown field `{key}` (a loss tree has only `outputs`)", "$"))
    if "outputs" not in data:
        return problems + [LossConfigError("Object missing required field `outputs`", "$")]
    outputs = data["outputs"]
    if not isinstance(outputs, Mapping):
        return problems + [LossConfigError(f"Expected `object`, got `{type(outputs).__name__}`", "$.outputs")]
    if not outputs:
        return problems + [LossConfigError("Expected at least one output", "$.outputs")]
    for name, config in outputs.items():
        where = _path((name,), "$.outputs")
        why = _bad_output_name(name)
        problems += [LossConfigError(why, where)] if why else [p.under(where) for p in config_problems(config)]
        if first_only and problems:
            break
    return problems


#: Names a child of LossTreeModule cannot take: the attributes of the module itself.
_MODULE_NAMES = frozenset(dir(torch.nn.Module())) | frozenset(dir(torch.nn.ModuleDict)) | {"_treespec", "_names"}


def _bad_output_name(name: Any) -> str | None:
    """Why ``name`` cannot name an output (a child of the tree's module), or None."""
    if not isinstance(name, str):
        return f"Expected output names to be `str`, got `{type(name).__name__}`"
    if not name:
        return "An output name may not be empty"
    if "." in name:
        return f"An output name may not contain '.' ({name!r}: it names a submodule path)"
    if name in _MODULE_NAMES:
        return f"An output may not be named {name!r}: the loss tree's module has an attribute of that name"
    return None


def load_config(path: str | os.PathLike[str], *, max_bytes: int | None = None) -> LossTree:
    """A loss tree from a ``.json``, ``.yaml``/``.yml`` or ``.toml`` file (see :func:`from_config`).

    The file is read as :func:`lossfn.load_config` reads loss configs: a regular file
    of at most ``max_bytes`` (``$LOSSFN_MAX_CONFIG_BYTES``, 4 MiB by default).
    """
    return from_config(read_document(path, max_bytes=max_bytes))


# -- the module form ------------------------------------------------------------


class TermModule(torch.nn.Module):
    """Module form of a :class:`Term` whose loss is not a generated ``lossfn.nn`` module.

    Tensor-valued parameters become buffers (``.to(device)`` moves them); an
    ``nn.Module`` loss becomes the child ``fn``.
    """

    def __init__(self, fn: LossFn, params: Mapping[str, Any], weight: float | Tensor = 1.0) -> None:
        super().__init__()
        self.fn = fn
        self.weight = weight
        self._plain = {}
        for key, value in params.items():
            if isinstance(value, Tensor):
                self.register_buffer(key, value)
            else:
                self._plain[key] = value

    def params(self) -> dict[str, Any]:
        """The keyword arguments passed to the function (buffers included)."""
        return self._plain | dict(self.named_buffers(recurse=False))

    def forward(self, *inputs: Any) -> Tensor:
        return self.fn(*inputs, **self.params())

    def extra_repr(self) -> str:
        fields = [] if isinstance(self.fn, torch.nn.Module) else [getattr(self.fn, "__name__", repr(self.fn))]
        fields += [f"{key}={value!r}" for key, value in self._plain.items()]
        fields.append(f"weight={self.weight!r}")
        return ", ".join(fields)


class LossTreeModule(torch.nn.Module):
    """The ``nn.Module`` form of a :class:`LossTree`; its children are the leaf modules.

    The children mirror the tree (inner nodes are ``nn.ModuleDict``\\ s), so
    ``.to()``, ``state_dict`` and ``repr`` show the whole tree. ``forward(outputs,
    targets)`` returns ``(total, parts)`` like the pure form, with each leaf's
    weight read from its module (``module.weight``, the config's weight).

    Leaves are the generated ``lossfn.nn`` modules where the tree holds a
    registered loss (so their input checks run, see ``validate_inputs``), and
    :class:`TermModule`\\ s otherwise.
    """

    def __init__(self, losses: PyTree | LossTree) -> None:
        super().__init__()
        losses = losses if isinstance(losses, LossTree) else LossTree(losses)
        self._treespec = losses.treespec
        self._names = [self._attach(path, leaf.as_module()) for path, leaf in zip(losses._paths, losses._terms)]

    def _attach(self, path: Path, module: torch.nn.Module) -> str:
        """Add ``module`` at ``path``, inner nodes as ``nn.ModuleDict``; return its dotted name."""
        if not path:  # the tree is a single loss
            self.add_module("loss", module)
            return "loss"
        parent: torch.nn.Module = self
        for depth, entry in enumerate(path):
            name = str(entry)
            leaf = depth == len(path) - 1
            try:
                if leaf:
                    parent.add_module(name, module)
                elif name not in parent._modules:
                    parent.add_module(name, torch.nn.ModuleDict())
            except (KeyError, TypeError) as exc:
                raise ValueError(
                    f"loss tree at {_path(path[: depth + 1])}: {name!r} cannot name a submodule ({exc})"
                ) from None
            parent = parent._modules[name]
        return ".".join(map(str, path))

    def leaves(self) -> list[torch.nn.Module]:
        """The leaf modules, in the tree's (optree's) order."""
        return [self.get_submodule(name) for name in self._names]

    def forward(self, outputs: PyTree, targets: PyTree) -> tuple[Tensor, PyTree]:
        outs = _flatten_like(self._treespec, outputs, "outputs")
        tgts = _flatten_like(self._treespec, targets, "targets")
        leaves = self.leaves()
        parts = [leaf(output, target) for leaf, output, target in zip(leaves, outs, tgts)]
        total = _total(parts, (leaf.weight for leaf in leaves))
        return total, self._treespec.unflatten(parts)


# -- combinators ------------------------------------------------------------------


def weighted_sum(values: PyTree, weights: PyTree | None = None) -> Tensor:
    """:math:`\\sum_i w_i v_i` over the leaves of a pytree (pure).

    Args:
        values: a pytree of tensors (e.g. the ``parts`` of a loss tree).
        weights: numbers or tensors in the same structure; None for a plain sum.

    Returns:
        The sum, of the leaves' broadcast shape (a scalar for scalar leaves).

    Raises:
        ValueError: ``values`` is empty, or ``weights`` has another structure
            (naming the missing and extra keys).
    """
    leaves, treespec = _flatten(values)
    if not leaves:
        raise ValueError("weighted_sum: no values to sum (an empty tree)")
    if weights is None:
        return functools.reduce(operator.add, leaves)
    return _total(leaves, _flatten_like(treespec, weights, "weights", "the values"))


def detach_labels(loss: LossFn) -> LossFn:
    """The loss with a stop-gradient on its labels: ``loss(logits, labels.detach(), **params)``.

    For targets computed by a model that must not be trained through them (a
    teacher's logits, the model's own pseudo-labels, a target network).
    ``labels`` may be a pytree of tensors (every tensor in it is detached); this
    works under ``torch.func.grad`` as under autograd.
    """

    def detached(logits: Any, labels: Any, **params: Any) -> Tensor:
        labels = optree.tree_map(lambda x: x.detach() if isinstance(x, Tensor) else x, labels, namespace=NAMESPACE)
        return loss(logits, labels, **params)

    return _named(detached, loss, "detach_labels")


def masked(loss: LossFn) -> LossFn:
    """The loss over the examples a mask keeps: ``masked(loss)(logits, (labels, mask))``.

    The labels come with a per-example mask, so in a loss tree the mask lives in
    the targets next to the labels (``{"price": (price, has_price)}``). With the
    unreduced losses :math:`\\ell_n` of ``loss(..., reduction="none")`` and mask
    (or weights) :math:`m_n`, broadcast over the trailing dimensions of
    :math:`\\ell` (a per-example mask ``[B]`` masks every element of an
    elementwise ``[B, D]`` loss):

    .. math::

        \\text{none}: m_n \\ell_n, \\qquad \\text{sum}: \\sum_n m_n \\ell_n, \\qquad
        \\text{mean}: \\frac{\\sum_n m_n \\ell_n}{\\sum_n m_n}

    and a mean with every example masked out is 0, with a zero gradient. Masked-out
    examples still go through ``loss``: give them a valid placeholder label (a
    class index in range, a finite number), which is then ignored. For a
    class-weighted loss the mean is over the kept :math:`\\ell_n` as returned by
    ``"none"``, not re-normalized by the class weights.

    Args:
        loss: ``loss(logits, labels, *, reduction, **params)``.

    Returns:
        ``fn(logits, (labels, mask), *, reduction="mean", **params)``, where
        ``mask`` (bool or float) has the shape of the ``"none"`` output or of its
        leading dimensions (``[B]`` per example).
    """

    def masked_loss(logits: Any, target: Any, *, reduction: str = "mean", **params: Any) -> Tensor:
        if not (isinstance(target, tuple | list) and len(target) == 2):
            got = type(target).__name__
            raise TypeError(f"{masked_loss.__name__}: labels must be a (labels, mask) pair; got {got}")
        labels, mask = target
        per_example = loss(logits, labels, reduction="none", **params)
        leading = per_example.shape[: mask.ndim] if isinstance(mask, Tensor) else None
        if not isinstance(mask, Tensor) or mask.shape != leading:
            got = f"shape {list(mask.shape)}" if isinstance(mask, Tensor) else type(mask).__name__
            raise ValueError(
                f"{masked_loss.__name__}: mask must have the shape of the unreduced losses "
                f"{list(per_example.shape)} or of their leading dimensions; got {got}"
            )
        weights = mask.to(per_example.dtype).reshape(mask.shape + (1,) * (per_example.ndim - mask.ndim))
        weights = weights.expand(per_example.shape)
        # where(), not a product alone: a masked-out inf/nan loss stays out of the sum
        kept = torch.where(weights != 0, per_example * weights, torch.zeros_like(per_example))
        return reduce_loss(kept, reduction, name=masked_loss.__name__, weights=weights)

    return _named(masked_loss, loss, "masked")


def _named(wrapper: LossFn, loss: LossFn, combinator: str) -> LossFn:
    wrapper.__name__ = wrapper.__qualname__ = f"{combinator}({getattr(loss, '__name__', type(loss).__name__)})"
    wrapper.__doc__ = f"``{wrapper.__name__}``: see :func:`lossfn.compose.{combinator}`."
    wrapper.__wrapped__ = loss  # type: ignore[attr-defined]
    return wrapper
