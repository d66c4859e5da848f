# Copyright (c) mmaff contributors. All rights reserved.
from .functional import iou_from_areas, label_areas, print_iou_table
from .metrics import *  # noqa: F401,F403

__all__ = ['label_areas', 'iou_from_areas', 'print_iou_table']
