# Copyright (c) mmaff contributors. All rights reserved.
from .functional import confusion_matrix, iou_from_confusion, print_iou_table
from .metrics import *  # noqa: F401,F403

__all__ = ['confusion_matrix', 'iou_from_confusion', 'print_iou_table']
