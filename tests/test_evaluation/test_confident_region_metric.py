# Copyright (c) mmaff contributors. All rights reserved.
"""ConfidentRegionMetric / score_confident_maps: stage 2's scores.

Small hand-made maps and masks whose figures are counted by hand below.
"""
import os.path as osp
import re

import numpy as np
import pytest

import mmaff  # noqa: F401
from mmaff.evaluation.metrics import ConfidentRegionMetric
from mmaff.evaluation.metrics.confident_region_metric import \
    score_confident_maps
from mmaff.registry import METRICS
from mmaff.utils import register_all_modules
from mmaff.utils.io import save_label_png

register_all_modules()

#: 8 classes: ids 0..7 valid.
CLASSES = tuple(f'c{i}' for i in range(8))

# image 1 (3 x 4); (1, 3) and (2, 2) ignored by the ground truth.
CONF1 = [[0, 0, 255, 3], [0, 3, 3, 255], [5, 5, 0, 0]]
GT1 = [[0, 0, 3, 3], [0, 3, 0, 255], [5, 3, 255, 0]]
# 10 counted pixels: confident fg (0,3) (1,1) (2,0) right, (1,2) (2,1)
# wrong -> 5, 3 right; confident bg (0,0) (0,1) (1,0) (2,3), all right;
# unsure (0,2); gt fg (0,2) (0,3) (1,1) (2,0) (2,1) = 5; gt bg 5.

# image 2 (2 x 3); (1, 1) ignored.
CONF2 = [[0, 255, 7], [0, 0, 255]]
GT2 = [[7, 0, 7], [0, 255, 7]]
# 5 counted pixels: confident fg (0,2) right -> 1, 1 right; confident bg
# (0,0) wrong, (1,0) right -> 2, 1 right; unsure (0,1) (1,2); gt fg (0,0)
# (0,2) (1,2) = 3; gt bg (0,1) (1,0) = 2.

#: Totals: fg 4 right of 6 confident, of 8 gt fg; bg 5 right of 6
#: confident, of 7 gt bg; 3 unsure of 15.
EXPECTED = dict(
    fg_precision=round(4 / 6, 4),
    bg_precision=round(5 / 6, 4),
    fg_recall=round(4 / 8, 4),
    bg_recall=round(5 / 7, 4),
    unsure_fraction=round(3 / 15, 4))


def _write(folder, name, rows):
    path = str(folder / name)
    save_label_png(path, np.array(rows, np.uint8))
    return path


@pytest.fixture
def files(tmp_path):
    """conf/<id>.png maps and gt/<id>.png masks of images x1 and x2."""
    (tmp_path / 'conf').mkdir()
    (tmp_path / 'gt').mkdir()
    return dict(
        conf_dir=str(tmp_path / 'conf'),
        maps=[
            lambda: _write(tmp_path / 'conf', 'x1.png', CONF1),
            lambda: _write(tmp_path / 'conf', 'x2.png', CONF2)
        ],
        gts=[
            _write(tmp_path / 'gt', 'x1.png', GT1),
            _write(tmp_path / 'gt', 'x2.png', GT2)
        ],
        tmp=tmp_path)


def _sample(img_id, gt_path):
    """A data sample as the evaluator passes it (a dict)."""
    return dict(
        img_path=f'/data/JPEGImages/{img_id}.jpg', seg_map_path=gt_path)


def _metric(conf_dir, classes=CLASSES, **kwargs):
    metric = METRICS.build(
        dict(type='ConfidentRegionMetric', conf_dir=conf_dir, **kwargs))
    metric.dataset_meta = dict(classes=classes)
    return metric


def test_figures_equal_a_hand_count(files):
    # the evaluator's process() comes before the hook writes the maps
    metric = _metric(files['conf_dir'])
    assert isinstance(metric, ConfidentRegionMetric)
    metric.process({}, [_sample('x1', files['gts'][0])])
    metric.process({}, [_sample('x2', files['gts'][1])])
    for write in files['maps']:
        write()
    assert metric.evaluate(2) == EXPECTED
    # the function the tool uses gives the same, with the image count
    pairs = [(osp.join(files['conf_dir'], f'x{i}.png'), gt)
             for i, gt in enumerate(files['gts'], 1)]
    assert score_confident_maps(pairs, 8) == dict(EXPECTED, num_images=2)
    # one image alone: 3 / 5, 4 / 4, 3 / 5, 4 / 5, 1 / 10
    assert score_confident_maps(pairs[:1], 8) == dict(
        fg_precision=0.6,
        bg_precision=1.0,
        fg_recall=0.6,
        bg_recall=0.8,
        unsure_fraction=0.1,
        num_images=1)


def test_prefix(files):
    for write in files['maps']:
        write()
    metric = _metric(files['conf_dir'], prefix='conf')
    metric.process({}, [_sample('x1', files['gts'][0])])
    metric.process({}, [_sample('x2', files['gts'][1])])
    assert metric.evaluate(2) == {f'conf/{k}': v for k, v in EXPECTED.items()}


def test_undefined_ratios_are_none(files):
    tmp = files['tmp']
    # all background, right: no confident fg, no gt fg
    bg_map = _write(tmp / 'conf', 'bg.png', [[0, 0], [0, 0]])
    bg_gt = _write(tmp / 'gt', 'bg.png', [[0, 0], [0, 255]])
    assert score_confident_maps([(bg_map, bg_gt)], 8) == dict(
        fg_precision=None,
        bg_precision=1.0,
        fg_recall=None,
        bg_recall=1.0,
        unsure_fraction=0.0,
        num_images=1)
    # everything ignored: no pixel counts, every ratio is undefined
    all_ignored = _write(tmp / 'gt', 'ign.png', [[255, 255], [255, 255]])
    metric = _metric(files['conf_dir'])
    metric.process({}, [_sample('bg', all_ignored)])
    assert metric.evaluate(1) == {k: None for k in EXPECTED}
    # no image at all
    assert score_confident_maps([], 8) == dict({k: None
                                                for k in EXPECTED},
                                               num_images=0)


def test_missing_seg_map_path_is_named(files):
    metric = _metric(files['conf_dir'])
    for sample in (dict(img_path='/data/JPEGImages/x7.jpg'),
                   dict(img_path='/data/JPEGImages/x7.jpg', seg_map_path='')):
        with pytest.raises(KeyError, match='image x7 has no seg_map_path'):
            metric.process({}, [sample])
    assert metric.results == []


def test_ground_truth_out_of_range_is_named(files):
    for write in files['maps']:
        write()
    # 6 classes: x2's id 7 lies outside 0..5
    metric = _metric(files['conf_dir'], classes=CLASSES[:6])
    metric.process({}, [_sample('x1', files['gts'][0])])
    metric.process({}, [_sample('x2', files['gts'][1])])
    with pytest.raises(ValueError) as info:
        metric.evaluate(2)
    msg = str(info.value)
    assert files['gts'][1] in msg and '[7]' in msg
    assert 'outside the class range 0..5' in msg


def test_missing_or_mismatched_files_are_named(files):
    files['maps'][0]()  # x2's map is missing
    metric = _metric(files['conf_dir'])
    metric.process({}, [_sample('x1', files['gts'][0])])
    metric.process({}, [_sample('x2', files['gts'][1])])
    with pytest.raises(
            FileNotFoundError,
            match=re.escape(osp.join(files['conf_dir'], 'x2.png'))):
        metric.evaluate(2)
    # a mask of another size than the map
    metric = _metric(files['conf_dir'])
    metric.process({}, [_sample('x1', files['gts'][1])])
    with pytest.raises(
            ValueError, match=re.escape(files['gts'][1]) + '.*does not match'):
        metric.evaluate(1)


@pytest.mark.parametrize('conf_dir', ['', None, 3])
def test_needs_a_conf_dir(conf_dir):
    with pytest.raises(ValueError, match='conf_dir'):
        ConfidentRegionMetric(conf_dir=conf_dir)
