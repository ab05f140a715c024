"""Singular-value fine-tuning: `singular_values_` re-parameterises, `merge_` folds back."""
from eigenscope.tune.singular import SVLinear, merge_, singular_values_, unwrap, wrap

__all__ = ["singular_values_", "merge_", "SVLinear", "wrap", "unwrap"]
