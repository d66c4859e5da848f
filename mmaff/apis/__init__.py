# Copyright (c) mmaff contributors. All rights reserved.
from .inference import inference_cams, inference_pseudo_label, init_model

__all__ = ['init_model', 'inference_cams', 'inference_pseudo_label']
