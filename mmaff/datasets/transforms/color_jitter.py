# Copyright (c) mmaff contributors. All rights reserved.
from typing import Optional

import cv2
import numpy as np
from mmcv.transforms import BaseTransform

from mmaff.registry import TRANSFORMS


@TRANSFORMS.register_module()
class ColorJitter(BaseTransform):
    """Random brightness, contrast, saturation and hue, in random order.

    The AffinityNet recipe's colour jitter (0.3, 0.3, 0.3, 0.1): each factor
    is drawn uniformly from [1 - x, 1 + x] (hue: a shift in [-h, h] of the
    full hue circle). Works on the BGR uint8 ``img`` of mmcv pipelines
    (mmcv's ``adjust_hue`` overflows on numpy 2 for negative shifts, hence
    this transform).

    Required keys: img. Modified keys: img.

    Args:
        brightness (float): Defaults to 0.
        contrast (float): Defaults to 0.
        saturation (float): Defaults to 0.
        hue (float): At most 0.5. Defaults to 0.
        seed (int, optional): Seed of a private generator (tests).
    """

    def __init__(self,
                 brightness: float = 0.,
                 contrast: float = 0.,
                 saturation: float = 0.,
                 hue: float = 0.,
                 seed: Optional[int] = None) -> None:
        for name, val in (('brightness', brightness), ('contrast', contrast),
                          ('saturation', saturation), ('hue', hue)):
            if val < 0:
                raise ValueError(f'{name} must be >= 0, got {val}')
        if hue > 0.5:
            raise ValueError(f'hue must be <= 0.5, got {hue}')
        self.brightness = brightness
        self.contrast = contrast
        self.saturation = saturation
        self.hue = hue
        self.rng = np.random.default_rng(seed) if seed is not None \
            else np.random

    @staticmethod
    def _gray(img: np.ndarray) -> np.ndarray:
        return cv2.cvtColor(img.astype(np.uint8),
                            cv2.COLOR_BGR2GRAY).astype(np.float32)

    def transform(self, results: dict) -> dict:
        """Jitter ``results['img']``."""
        img = results['img'].astype(np.float32)
        for op in self.rng.permutation(4):
            if op == 0 and self.brightness > 0:
                img = img * self.rng.uniform(1 - self.brightness,
                                             1 + self.brightness)
            elif op == 1 and self.contrast > 0:
                f = self.rng.uniform(1 - self.contrast, 1 + self.contrast)
                mean = self._gray(np.clip(img, 0, 255)).mean()
                img = img * f + mean * (1 - f)
            elif op == 2 and self.saturation > 0:
                f = self.rng.uniform(1 - self.saturation,
                                     1 + self.saturation)
                gray = self._gray(np.clip(img, 0, 255))[..., None]
                img = img * f + gray * (1 - f)
            elif op == 3 and self.hue > 0:
                shift = self.rng.uniform(-self.hue, self.hue)
                hsv = cv2.cvtColor(
                    np.clip(img, 0, 255).astype(np.uint8), cv2.COLOR_BGR2HSV)
                # OpenCV's 8-bit hue runs over 0..179
                h = hsv[..., 0].astype(np.int32) + int(round(shift * 180))
                hsv[..., 0] = np.mod(h, 180).astype(np.uint8)
                img = cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR).astype(np.float32)
            img = np.clip(img, 0, 255)
        results['img'] = img.astype(np.uint8)
        return results

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(brightness={self.brightness}, '
                f'contrast={self.contrast}, saturation={self.saturation}, '
                f'hue={self.hue})')
