# Copyright (c) mmaff contributors. All rights reserved.
from .cam_export_hook import CAMExportHook
from .random_walk_hook import RandomWalkHook

__all__ = ['CAMExportHook', 'RandomWalkHook']
