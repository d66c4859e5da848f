# Copyright (c) mmaff contributors. All rights reserved.
from .resnet38d import ResNet38d

__all__ = ['ResNet38d']
