# Copyright (c) mmaff contributors. All rights reserved.
from .check_label_map import CheckLabelMap
from .color_jitter import ColorJitter
from .load_cams import LoadCAMs

__all__ = ['CheckLabelMap', 'ColorJitter', 'LoadCAMs']
