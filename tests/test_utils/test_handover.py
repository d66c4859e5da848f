# Copyright (c) mmaff contributors. All rights reserved.
import os.path as osp

import pytest
from mmengine.config import Config

from mmaff.utils.handover import handover_values, resolve_handovers
from mmaff.utils.tool_utils import load_tool_config, set_output_dir
from mmaff_testing import DEMO_CAM

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


def _cfg(**extra):
    return Config(
        dict(
            handover_root='w',
            handovers=dict(cams='{handover_root}/cams', thr=0.3, ext='/abs'),
            hook=dict(out_dir='{handovers.cams}', items=['{handovers.ext}']),
            metric=dict(thr='{handovers.thr}', note='at {handovers.thr}'),
            other='{not_a_handover}',
            **extra))


def test_references_are_filled_in_with_their_types():
    cfg = _cfg()
    resolve_handovers(cfg)
    assert cfg.hook.out_dir == 'w/cams'
    assert cfg.hook['items'] == ['/abs']
    assert cfg.metric.thr == 0.3 and isinstance(cfg.metric.thr, float)
    assert cfg.metric.note == 'at 0.3'
    assert cfg.other == '{not_a_handover}'  # only handovers.* are touched
    assert cfg.handovers.cams == 'w/cams'


def test_one_option_moves_every_hand_over_and_one_moves_one():
    cfg = _cfg()
    cfg.merge_from_dict({'handover_root': 'elsewhere/', 'handovers.ext': 'x'})
    assert handover_values(cfg)['cams'] == 'elsewhere/cams'
    resolve_handovers(cfg)
    assert (cfg.hook.out_dir, cfg.hook['items']) == ('elsewhere/cams', ['x'])


def test_unknown_reference_names_the_key():
    cfg = _cfg(bad=dict(path='{handovers.camz}'))
    with pytest.raises(KeyError, match=r"bad\.path.*'camz'.*cams"):
        resolve_handovers(cfg)


def test_root_reference_without_a_root_is_an_error():
    cfg = Config(dict(handovers=dict(cams='{handover_root}/cams')))
    with pytest.raises(KeyError, match='handover_root'):
        handover_values(cfg)


def test_stage_configs_resolve_through_the_tools_loader():
    config = osp.join(REPO, DEMO_CAM)
    cfg = load_tool_config(config, {'handover_root': 'elsewhere'})
    assert cfg.custom_hooks[0].out_dir == 'elsewhere/cams'
    assert cfg.handovers.cam_work_dir == 'elsewhere/cam'
    assert '{handovers' not in cfg.pretty_text


def test_out_is_the_evaluator_output_dir_or_a_clear_error():
    cfg = Config(dict(test_evaluator=dict(type='IoUMetric')))
    set_output_dir(cfg, 'new')
    assert cfg.test_evaluator.output_dir == 'new'
    assert cfg.test_evaluator.keep_results
    cfg = Config(
        dict(test_evaluator=dict(type='CAMMetric'), handovers=dict(cams='c')))
    with pytest.raises(ValueError, match='handovers.NAME=DIR.*cams'):
        set_output_dir(cfg, 'new')
