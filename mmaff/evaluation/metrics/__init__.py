# Copyright (c) mmaff contributors. All rights reserved.
from .cam_metric import CAMMetric

__all__ = ['CAMMetric']
