"""One initializer instance per weight: clones of a configured initializer, seeded apart.

A Keras 3 random initializer is stateless: an instance built with ``seed=None`` draws
one seed when it is constructed and returns the same values every time it is called
with the same shape. Reusing one instance for several weights therefore gives them
identical values (same shape) or identical leading rows (different sizes). Every weight
of this package gets its own clone from :func:`clone_initializer`:

* an initializer with an integer seed gets, per weight, a seed derived from that seed
  and the weight's name (distinct weights, reproducible from the configured seed);
* an unseeded initializer is re-instantiated, which draws a fresh seed from Keras'
  global seed generator (distinct weights, reproducible under
  ``keras.utils.set_random_seed``), as ``keras.layers.MultiHeadAttention`` does for
  its sublayers;
* an initializer seeded with a ``keras.random.SeedGenerator`` is stateful (each call
  advances the generator) and is returned as it is; so are non-random initializers
  (constants, identity), whose copies are meant to be equal.
"""

from __future__ import annotations

import zlib
from typing import Any

import keras


def derive_seed(seed: int, salt: str) -> int:
    """A deterministic 31-bit seed from ``seed`` and a weight name ``salt``."""
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ValueError(f"`seed` must be an integer, got seed={seed!r}.")
    return zlib.crc32(f"{seed}/{salt}".encode()) & 0x7FFFFFFF


def with_seed(initializer: Any, seed: int | None) -> Any:
    """``initializer`` configured anew with ``seed`` (non-random ones are returned as they are).

    Args:
        initializer: str, dict or ``keras.initializers.Initializer``.
        seed: int or None. The new instance's seed (None: Keras draws one).

    Returns:
        A new initializer of the same class and configuration but the seed, or the
        given initializer when its configuration has no seed (constants, identity).
    """
    init = keras.initializers.get(initializer)
    config = init.get_config()
    if "seed" not in config:
        return init
    return init.__class__.from_config({**config, "seed": seed})


def clone_initializer(initializer: Any, salt: str, seed: int | None = None) -> Any:
    """A fresh initializer for one weight, configured like ``initializer``.

    Args:
        initializer: str, dict or ``keras.initializers.Initializer``. The configured
            initializer (anything ``keras.initializers.get`` accepts).
        salt: str. The weight's name within its layer; with an integer seed it
            decides the derived seed, so distinct names give distinct values.
        seed: int or None. Used when the initializer itself has no seed (e.g. the
            layer's ``seed`` argument). Defaults to None.

    Returns:
        A new initializer instance (or the given one when cloning is not needed:
        non-random or ``SeedGenerator``-seeded initializers).

    Example:
        >>> init = keras.initializers.GlorotUniform()
        >>> a = clone_initializer(init, "query")((4, 4))
        >>> b = clone_initializer(init, "key")((4, 4))  # differs from a
    """
    init = keras.initializers.get(initializer)
    config = init.get_config()
    if "seed" not in config:
        return init
    own_seed = getattr(init, "_init_seed", config["seed"])
    if isinstance(own_seed, keras.random.SeedGenerator):
        return init
    base = own_seed if isinstance(own_seed, int) and not isinstance(own_seed, bool) else seed
    return with_seed(init, None if base is None else derive_seed(int(base), salt))
