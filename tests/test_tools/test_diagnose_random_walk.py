# Copyright (c) mmaff contributors. All rights reserved.
"""The pure parts of ``tools/analysis_tools/diagnose_random_walk.py``:
majority labels on the grid, oracle affinities and the grid ceiling, each
against a hand-built case. (The whole tool reads a trained AffinityNet: its
output on the demo is ``docs/random_walk_diagnosis.md``.)
"""
import sys

import numpy as np
import pytest
import torch
from mmaff_testing import load_tool

from mmaff.ops import propagate_cams, scores_to_label
from mmaff.ops.affinity import pair_offsets
from mmaff.ops.cam import background_score


@pytest.fixture(scope='module')
def tool():
    yield load_tool('tools/analysis_tools/diagnose_random_walk.py',
                    'diagnose_random_walk_tool')
    sys.modules.pop('diagnose_random_walk_tool', None)


def test_grid_truth_is_the_cell_majority(tool):
    gt = np.zeros((4, 6), np.uint8)
    gt[:, 2:] = 1  # cell 0: 2 bg + 2 fg per row -> tie -> lower id (bg)
    gt[:2, 4:] = 255  # cell 2, top half unsure: the labelled half decides
    gt[2:, 4:] = 2
    gt[:2, :2] = 255
    gt[2:, :2] = 255  # cell 0 entirely unsure? no: column 2-3 belongs to it
    grid = tool.grid_truth(gt, 3, stride=2)
    # cells (2 x 2): row 0: [255 unsure, 1, 255 unsure]; row 1: [255, 1, 2]
    assert grid.tolist() == [[255, 1, 255], [255, 1, 2]]
    assert grid.dtype == torch.int64


def test_oracle_affinity(tool):
    grid = torch.tensor([[0, 0, 1], [255, 1, 1]])
    aff = tool.oracle_affinity(grid, radius=2)
    offsets = pair_offsets(2)  # (0, 1), (1, -1), (1, 0), (1, 1)
    assert aff.shape == (len(offsets), 2, 3)
    for p, (dy, dx) in enumerate(offsets):
        for y in range(2):
            for x in range(3):
                y2, x2 = y + dy, x + dx
                if not (0 <= y2 < 2 and 0 <= x2 < 3):
                    want = 0.5  # no partner: the walk never reads it
                elif 255 in (int(grid[y, x]), int(grid[y2, x2])):
                    want = 0.5
                else:
                    want = float(grid[y, x] == grid[y2, x2])
                assert float(aff[p, y, x]) == want, (p, y, x)


def test_grid_ceiling(tool):
    gt = np.zeros((16, 16), np.uint8)
    gt[:, :8] = 1  # a boundary on a cell edge survives the upsampling
    np.testing.assert_array_equal(tool.truth_on_grid_ceiling(gt, 2, 8), gt)
    # a 1-pixel object is lost on the stride-8 grid, kept on stride 1
    gt = np.zeros((16, 16), np.uint8)
    gt[3, 3] = 1
    assert (tool.truth_on_grid_ceiling(gt, 2, 8) == 0).all()
    np.testing.assert_array_equal(tool.truth_on_grid_ceiling(gt, 2, 1), gt)


def test_oracle_walk_spreads_the_part_over_the_object(tool):
    """With oracle affinities the walk spreads a CAM peak over the whole
    object (whose weak CAM alone loses to the background score) and not
    over a weak CAM bleeding into the background: the ceiling the learnt
    affinities aim at."""
    gt = np.zeros((48, 48), np.uint8)
    gt[8:40, 8:32] = 1  # 4 x 3 cells
    cams = np.zeros((1, 48, 48), np.float32)
    cams[0, 8:40, 8:32] = 0.12  # weak on the body: bg 0.88^16 = 0.13 wins
    cams[0, 16:24, 16:24] = 1.0  # the part the CAM finds
    cams[0, 40:48, :] = 0.12  # bleeding into the background
    grid = tool.grid_truth(gt, 2, stride=8)
    aff = tool.oracle_affinity(grid, radius=3)
    cells = (slice(4, None, 8), slice(4, None, 8))  # cell centres
    cam_t = torch.from_numpy(cams)
    cam_only = scores_to_label(
        torch.cat([background_score(cam_t, 16), cam_t]), [1]).numpy()
    assert cam_only[cells][1:5, 1:4].sum() == 1  # the part's cell alone
    scores = propagate_cams(
        cams, aff, alpha=16, beta=8, steps=8, radius=3, stride=8)
    label = scores_to_label(scores, [1]).numpy()
    walked = label[cells]
    assert (walked[1:4, 1:4] == 1).all()  # the body, away from corners
    assert (walked[5] == 0).all()  # the bleed stays background
    assert (label[gt == 0] == 0).mean() > 0.9
