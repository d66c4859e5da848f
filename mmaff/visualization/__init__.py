# Copyright (c) mmaff contributors. All rights reserved.
from .cam_visualizer import CAMLocalVisualizer

__all__ = ['CAMLocalVisualizer']
