# Copyright (c) mmaff contributors. All rights reserved.
import cv2
import numpy as np
import pytest

import mmaff  # noqa: F401
from mmaff.registry import TRANSFORMS
from mmaff.utils import register_all_modules

register_all_modules()


def _img(seed=0):
    return np.random.default_rng(seed).integers(0, 256, (16, 20, 3),
                                                dtype=np.uint8)


def test_zero_jitter_is_identity_and_builds_from_config():
    t = TRANSFORMS.build(dict(type='ColorJitter'))
    img = _img()
    np.testing.assert_array_equal(t(dict(img=img.copy()))['img'], img)


def test_brightness_scales_by_a_factor_in_range():
    t = TRANSFORMS.build(dict(type='ColorJitter', brightness=0.3, seed=1))
    img = np.full((4, 4, 3), 100, np.uint8)
    out = t(dict(img=img))['img'].astype(float)
    factor = out[0, 0, 0] / 100
    assert 0.7 - 0.01 <= factor <= 1.3 + 0.01
    assert (out == out[0, 0, 0]).all()


def test_hue_shift_rotates_hue_and_keeps_value():
    t = TRANSFORMS.build(dict(type='ColorJitter', hue=0.5, seed=3))
    img = np.zeros((4, 4, 3), np.uint8)
    img[..., 2] = 200  # pure red in BGR
    out = t(dict(img=img.copy()))['img']
    rng = np.random.default_rng(3)
    rng.permutation(4)  # the transform draws the order first
    shift = rng.uniform(-0.5, 0.5)
    hsv = cv2.cvtColor(img, cv2.COLOR_BGR2HSV)
    exp_h = (int(hsv[0, 0, 0]) + int(round(shift * 180))) % 180
    got = cv2.cvtColor(out, cv2.COLOR_BGR2HSV)
    assert abs(int(got[0, 0, 0]) - exp_h) <= 1
    assert abs(int(got[0, 0, 2]) - 200) <= 2


def test_saturation_zero_factor_gives_gray_and_bad_args_raise():
    t = TRANSFORMS.build(dict(type='ColorJitter', saturation=1.0, seed=0))
    img = _img()
    # draw the factor the same way and check the blend with the gray image
    rng = np.random.default_rng(0)
    rng.permutation(4)
    f = rng.uniform(0.0, 2.0)
    gray = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY).astype(np.float32)[..., None]
    exp = np.clip(img.astype(np.float32) * f + gray * (1 - f), 0, 255)
    out = t(dict(img=img.copy()))['img']
    assert np.abs(out.astype(float) - exp.astype(np.uint8)).max() <= 1
    with pytest.raises(ValueError, match='hue'):
        TRANSFORMS.build(dict(type='ColorJitter', hue=0.6))
    with pytest.raises(ValueError, match='brightness'):
        TRANSFORMS.build(dict(type='ColorJitter', brightness=-1))
