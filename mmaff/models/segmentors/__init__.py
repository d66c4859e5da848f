# Copyright (c) mmaff contributors. All rights reserved.
from .affinitynet import AffinityNet
from .cam_classifier import CAMClassifier

__all__ = ['CAMClassifier', 'AffinityNet']
