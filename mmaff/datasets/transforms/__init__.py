# Copyright (c) mmaff contributors. All rights reserved.
from .color_jitter import ColorJitter

__all__ = ['ColorJitter']
