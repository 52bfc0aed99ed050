"""Output-feature types, named after Ludwig's output features."""

from __future__ import annotations

import enum

__all__ = ["Feature", "DEFAULT_LOSS"]


class Feature(enum.StrEnum):
    """The kind of model output a loss serves (Ludwig's output-feature types)."""

    ANOMALY = "anomaly"
    BINARY = "binary"
    CATEGORY = "category"
    CATEGORY_DISTRIBUTION = "category_distribution"
    IMAGE = "image"
    NUMBER = "number"
    SEQUENCE = "sequence"
    SET = "set"
    TEXT = "text"
    TIMESERIES = "timeseries"
    VECTOR = "vector"

    @classmethod
    def parse(cls, value: "Feature | str") -> "Feature":
        """``Feature(value)`` with an error that lists the valid feature types."""
        try:
            return cls(value)
        except ValueError:
            valid = ", ".join(f.value for f in cls)
            raise ValueError(f"unknown feature type {value!r}; expected one of: {valid}") from None


#: The loss a feature type uses when a config names none (Ludwig's defaults).
DEFAULT_LOSS: dict[Feature, str] = {
    Feature.ANOMALY: "deep_svdd",
    Feature.BINARY: "binary_weighted_cross_entropy",
    Feature.CATEGORY: "softmax_cross_entropy",
    Feature.CATEGORY_DISTRIBUTION: "softmax_cross_entropy",
    Feature.IMAGE: "softmax_cross_entropy",
    Feature.NUMBER: "mean_squared_error",
    Feature.SEQUENCE: "sequence_softmax_cross_entropy",
    Feature.SET: "sigmoid_cross_entropy",
    Feature.TEXT: "sequence_softmax_cross_entropy",
    Feature.TIMESERIES: "huber",
    Feature.VECTOR: "mean_squared_error",
}
