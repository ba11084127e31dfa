"""The closed sets of model variants: every option list the config and the layers check.

Standard library only, so that reading a config does not import Keras.
"""

from __future__ import annotations

#: Sequence pooling of FESeq (paper Table 8): attention, mean of the real positions,
#: or the target position alone.
POOLING_TYPES: tuple[str, ...] = ("attention", "mean", "target")
#: Score function of the attention pooling (paper Table 9).
ATTENTION_TYPES: tuple[str, ...] = ("bilinear", "dot", "din")
#: How the sequence refiner combines positional and time embeddings with its input.
TIME_COMBINE: tuple[str, ...] = ("concat", "add")
#: Layout of DCN-V2's cross network and MLP.
DCN_STRUCTURES: tuple[str, ...] = ("stacked", "parallel")
