# Copyright (c) mmaff contributors. All rights reserved.
from .cam_metric import CAMMetric
from .confident_region_metric import ConfidentRegionMetric
from .pseudo_label_metric import PseudoLabelMetric

__all__ = ['CAMMetric', 'ConfidentRegionMetric', 'PseudoLabelMetric']
