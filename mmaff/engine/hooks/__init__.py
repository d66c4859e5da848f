# Copyright (c) mmaff contributors. All rights reserved.
from .cam_export_hook import CAMExportHook
from .confident_region_hook import ConfidentRegionHook
from .export_hook import BaseExportHook
from .num_classes_check_hook import NumClassesCheckHook
from .random_state_hook import RandomStateHook
from .random_walk_hook import RandomWalkHook

__all__ = [
    'BaseExportHook', 'CAMExportHook', 'ConfidentRegionHook',
    'NumClassesCheckHook', 'RandomStateHook', 'RandomWalkHook'
]
