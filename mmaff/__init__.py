# Copyright (c) mmaff contributors. All rights reserved.
"""mmaff: AffinityNet weakly supervised segmentation for OpenMMLab."""
from .utils.compat import apply_all as _apply_compat
from .version import __version__

# Must run before mmseg.models is first imported (see mmaff.utils.compat).
_apply_compat()

# Register every component (mmaff.registry mirrors them into mmseg's
# registries, so configs that inherit mmseg's bases find them too).
from . import datasets, engine, evaluation, models  # noqa: E402,F401,I001
from . import visualization  # noqa: E402,F401,I001

__all__ = ['__version__']
