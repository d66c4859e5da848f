# Copyright (c) mmaff contributors. All rights reserved.
from .inference import (inference_cams, inference_pseudo_label, init_model,
                        refiner_from_config)

__all__ = [
    'init_model', 'inference_cams', 'inference_pseudo_label',
    'refiner_from_config'
]
