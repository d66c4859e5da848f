# Copyright (c) mmaff contributors. All rights reserved.
from .cam_classifier import CAMClassifier

__all__ = ['CAMClassifier']
