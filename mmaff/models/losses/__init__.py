# Copyright (c) mmaff contributors. All rights reserved.
from .affinity_loss import AffinityLoss

__all__ = ['AffinityLoss']
