# Copyright (c) mmaff contributors. All rights reserved.
from .check_label_map import CheckLabelMap
from .color_jitter import ColorJitter

__all__ = ['CheckLabelMap', 'ColorJitter']
