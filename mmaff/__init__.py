# Copyright (c) mmaff contributors. All rights reserved.
"""mmaff: AffinityNet weakly supervised segmentation for OpenMMLab."""
from .utils.compat import apply_all as _apply_compat
from .version import __version__

# Must run before mmseg.models is first imported (see mmaff.utils.compat).
_apply_compat()

__all__ = ['__version__']
