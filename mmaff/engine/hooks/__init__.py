# Copyright (c) mmaff contributors. All rights reserved.
from .cam_export_hook import CAMExportHook
from .num_classes_check_hook import NumClassesCheckHook
from .random_walk_hook import RandomWalkHook

__all__ = ['CAMExportHook', 'NumClassesCheckHook', 'RandomWalkHook']
