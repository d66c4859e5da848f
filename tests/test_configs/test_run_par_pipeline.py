# Copyright (c) mmaff contributors. All rights reserved.
"""The demo pipeline with the PAR refiner runs end to end (smoke mode), and
its stage configs are the demo's but for the refiner."""
import json
import os
import os.path as osp

from mmengine.config import Config

from test_run_configs import OTHER_PIPELINES, PY, REPO, _run

PAR_PIPELINE = 'configs/demo/pipeline_affinitynet_r18-d8_demo_par.py'
#: PAR stage config -> the demo stage config it varies.
PAR_STAGES = {
    'configs/demo/affinitynet-cam_r18-d8_1xb16-3k_demo-112x112_par.py':
    'configs/demo/affinitynet-cam_r18-d8_1xb16-3k_demo-112x112.py',
    'configs/demo/affinitynet_r18-d8_1xb8-1k_demo-96x96_par.py':
    'configs/demo/affinitynet_r18-d8_1xb8-1k_demo-96x96.py',
}


def test_par_pipeline_is_registered():
    assert OTHER_PIPELINES[PAR_PIPELINE] == (
        'tests/test_configs/test_run_par_pipeline.py::'
        'test_demo_par_pipeline_smoke')
    cfg = Config.fromfile(osp.join(REPO, PAR_PIPELINE))
    demo = Config.fromfile(
        osp.join(REPO, 'configs/demo/pipeline_affinitynet_r18-d8_demo.py'))
    assert cfg.work_dir == 'work_dirs/demo_par' != demo.work_dir
    assert (cfg.cam_config, cfg.aff_config) == tuple(PAR_STAGES)
    assert cfg.stages == demo.stages


def test_par_stage_configs_differ_from_the_demo_only_in_the_refiner():
    for par_path, demo_path in PAR_STAGES.items():
        par = Config.fromfile(osp.join(REPO, par_path))
        demo = Config.fromfile(osp.join(REPO, demo_path))
        refiners = []
        for cfg in (par, demo):
            hooks = [dict(h) for h in cfg.custom_hooks]
            refiners.append([h.pop('refiner', None) for h in hooks])
            cfg.custom_hooks = hooks
        assert [r for r in refiners[0] if r] == [dict(type='PAR')]
        assert [r['type'] for r in refiners[1] if r] == ['DenseCRF']
        assert par.to_dict() == demo.to_dict(), par_path


def test_demo_par_pipeline_smoke(tmp_path):
    """``tools/run_pipeline.py`` on the PAR pipeline, smoke mode (2
    iterations per training, 4 images a split), from a user's folder."""
    ws = tmp_path / 'ws'
    ws.mkdir()
    os.symlink(osp.join(REPO, 'configs'), ws / 'configs')
    out = _run([
        PY,
        osp.join(REPO, 'tools/run_pipeline.py'), PAR_PIPELINE, '--smoke',
        '--smoke-iters', '2', '--smoke-images', '4', '--cfg-options',
        'train_dataloader.num_workers=0',
        'train_dataloader.persistent_workers=False'
    ], cwd=ws)
    work = ws / 'work_dirs' / 'demo_par_smoke'
    with open(work / 'summary.json') as f:
        summary = json.load(f)
    assert {'cam', 'confident_regions', 'rw', 'rw_crf', 'seg'} <= set(summary)
    for key in ('rw', 'rw_crf', 'seg'):
        assert 0 <= summary[key]['mIoU'] <= 100, summary
    # the stages wrote the refined files of the PAR configs
    assert os.listdir(work / 'conf') and os.listdir(work / 'pseudo_rw_crf')
    assert osp.isfile(work / 'pipeline.png')
    assert not osp.exists(ws / 'work_dirs' / 'demo_smoke')
    assert 'rw_export: finished' in out, out[-3000:]
