# Copyright (c) mmaff contributors. All rights reserved.
"""Unit tests of ``tools/analysis_tools/visualize_pipeline.py``.

The whole tool runs in the demo smoke pipeline (``tests/test_configs``, the
``figure`` stage); here only its pure parts: the per-image mIoU, the CAM
threshold and split it names, and the picture's assembly.
"""
import os.path as osp
import sys
from types import SimpleNamespace

import numpy as np
import pytest
from mmaff_testing import DEMO_CAM, DEMO_SEG, REPO, load_tool
from mmengine.config import Config

from mmaff.utils.handover import resolve_handovers


@pytest.fixture(scope='module')
def tool():
    yield load_tool('tools/analysis_tools/visualize_pipeline.py',
                    'visualize_pipeline_tool')
    sys.modules.pop('visualize_pipeline_tool', None)


# 2 classes on 4 x 4, the bottom-right pixel ignored (its prediction, an
# out-of-range 7, must not count).
GT = np.array([[0, 0, 1, 1],
               [0, 0, 1, 1],
               [0, 0, 1, 1],
               [0, 0, 1, 255]])  # yapf: disable
PRED = np.array([[0, 0, 0, 1],
                 [0, 0, 1, 1],
                 [0, 0, 1, 1],
                 [1, 0, 1, 7]])  # yapf: disable


def test_image_miou_by_hand(tool):
    # class 0: gt 8, pred 8 (valid pixels), intersection 7 -> 7 / 9
    # class 1: gt 7, pred 7, intersection 6 -> 6 / 8
    expected = (7 / 9 + 6 / 8) / 2
    assert tool.image_miou(PRED, GT, 2) == pytest.approx(expected)
    # a class absent from both (empty union) is left out of the mean
    assert tool.image_miou(PRED, GT, 21) == pytest.approx(expected)


def test_image_miou_edge_cases(tool):
    gt = np.zeros((2, 2), np.uint8)
    assert tool.image_miou(gt, gt, 3) == 1.0
    # a predicted class missing from the truth counts with IoU 0
    pred = np.array([[0, 0], [0, 2]])
    assert tool.image_miou(pred, gt, 3) == pytest.approx((3 / 4 + 0) / 2)
    # everything ignored: no class has a union
    assert np.isnan(tool.image_miou(pred, np.full((2, 2), 255), 3))
    assert tool.format_miou(float('nan')) == 'mIoU n/a'
    assert tool.format_miou(0.7639) == 'mIoU 76.4'
    with pytest.raises(ValueError, match='shape'):
        tool.image_miou(pred, np.zeros((3, 3)), 3)


def test_cam_threshold_and_split(tool):
    cfg = Config.fromfile(osp.join(REPO, DEMO_CAM))
    resolve_handovers(cfg)  # as mmaff.apis.init_model does
    assert tool.cam_bg_threshold(SimpleNamespace(cfg=cfg)) == pytest.approx(
        float(cfg.handovers.cam_bg_threshold))
    bare = SimpleNamespace(cfg=Config(dict(model=dict())), bg_threshold=0.3)
    assert tool.cam_bg_threshold(bare) == 0.3
    seg = Config.fromfile(osp.join(REPO, DEMO_SEG))
    assert tool.split_name(seg.test_dataloader.dataset) == 'val'
    assert tool.split_name(dict()) == 'val'


def test_option_in_help(tool, monkeypatch, capsys):
    monkeypatch.setattr(sys, 'argv', ['visualize_pipeline.py', '--help'])
    with pytest.raises(SystemExit) as exc:
        tool.main()
    assert exc.value.code == 0
    assert '--cam-bg-threshold' in capsys.readouterr().out


def _tiles(height, width, value):
    return [
        np.full((height, width, 3), value + k, np.uint8)
        for k in range(len(('image', 'CAM', 'RW', 'RW+dCRF', 'segmentation',
                            'truth')))
    ]


def test_assemble_grid(tool):
    assert tool.COLUMNS == ('image', 'CAM', 'RW', 'RW+dCRF', 'segmentation',
                            'truth')
    header = tool.TITLE_HEIGHT + tool.NAMES_HEIGHT
    # rows of different sizes: cells padded to their row and column
    rows = [_tiles(30, 50, 10), _tiles(20, 70, 100)]
    captions = [['a.jpg', 'mIoU 50.0', 'mIoU 60.0', 'mIoU 70.0', 'mIoU 80.0',
                 None]] * 2
    grid = tool.assemble_grid(rows, tool.COLUMNS, 'val images', captions)
    assert grid.dtype == np.uint8
    assert grid.shape == (header + 30 + 20 + 2 * tool.CAPTION_HEIGHT,
                          6 * 70, 3)
    # the header and the captions are written (dark text on white)
    assert (grid[:tool.TITLE_HEIGHT] < 128).any()
    assert (grid[tool.TITLE_HEIGHT:header] < 128).any()
    strip = grid[header + 30:header + 30 + tool.CAPTION_HEIGHT]
    assert (strip[:, :70] < 128).any()  # file name
    assert (strip[:, 5 * 70:] == 255).all()  # no caption under the truth
    # tiles in place, white padding around the smaller ones
    assert (grid[header:header + 30, 70:120] == 11).all()
    assert (grid[header:header + 30, 120:140] == 255).all()
    second = header + 30 + tool.CAPTION_HEIGHT
    assert (grid[second:second + 20, 5 * 70:] == 105).all()
    # without captions: no strips
    plain = tool.assemble_grid(rows, tool.COLUMNS, 'val images')
    assert plain.shape == (header + 50, 6 * 70, 3)


def test_assemble_grid_rejects_bad_input(tool):
    with pytest.raises(ValueError, match='columns'):
        tool.assemble_grid([_tiles(4, 4, 0)[:5]], tool.COLUMNS, 't')
    with pytest.raises(ValueError, match='captions'):
        tool.assemble_grid([_tiles(4, 4, 0)], tool.COLUMNS, 't', [['x']])
    with pytest.raises(ValueError, match='no rows'):
        tool.assemble_grid([], tool.COLUMNS, 't')
