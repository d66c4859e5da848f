# Copyright (c) mmaff contributors. All rights reserved.
from mmengine.config import Config

from mmaff.utils.tool_utils import redirect_outputs


def test_out_redirects_hooks_and_the_evaluator_follows():
    cfg = Config(
        dict(
            custom_hooks=[
                dict(type='RandomWalkHook', cam_dir='c', out_dir='a/rw',
                     crf_out_dir='a/rw_crf'),
                dict(type='EmptyCacheHook')
            ],
            test_evaluator=dict(
                type='PseudoLabelMetric', cam_dir='c',
                label_dirs={'RW': 'a/rw', 'RW+dCRF': 'a/rw_crf'})))
    assert redirect_outputs(cfg, 'new')
    hook = cfg.custom_hooks[0]
    assert (hook.out_dir, hook.crf_out_dir, hook.cam_dir) == ('new',
                                                              'new_crf', 'c')
    assert dict(cfg.test_evaluator.label_dirs) == {
        'RW': 'new',
        'RW+dCRF': 'new_crf'
    }
    assert cfg.test_evaluator.cam_dir == 'c'


def test_out_without_export_hooks_changes_nothing():
    cfg = Config(dict(custom_hooks=[dict(type='EmptyCacheHook')],
                      test_evaluator=dict(type='IoUMetric')))
    assert not redirect_outputs(cfg, 'new')
    assert cfg.test_evaluator == dict(type='IoUMetric')
