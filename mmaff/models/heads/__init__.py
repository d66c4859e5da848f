# Copyright (c) mmaff contributors. All rights reserved.
from .cam_head import CAMHead

__all__ = ['CAMHead']
