# Copyright (c) mmaff contributors. All rights reserved.
from .cam_export_hook import CAMExportHook

__all__ = ['CAMExportHook']
