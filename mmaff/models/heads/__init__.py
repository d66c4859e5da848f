# Copyright (c) mmaff contributors. All rights reserved.
from .affinity_head import AffinityHead
from .cam_head import CAMHead

__all__ = ['CAMHead', 'AffinityHead']
