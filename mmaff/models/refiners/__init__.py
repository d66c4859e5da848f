# Copyright (c) mmaff contributors. All rights reserved.
"""Label refiners: image + class scores in, refined class scores out."""
from .base_refiner import BaseRefiner, build_refiner
from .dense_crf import DenseCRF
from .par import PAR

__all__ = ['BaseRefiner', 'build_refiner', 'DenseCRF', 'PAR']
