# Copyright (c) mmaff contributors. All rights reserved.
"""Every shipped config runs end to end, as a user runs it.

A user's working directory is built in a temporary folder: ``configs``
(linked to the repository's), a miniature VOC 2012 + SBD tree at the
configs' own ``data/VOCdevkit/VOC2012`` (``make_mini_voc.py``: non-square
images, SBD-only images without a ``SegmentationClass`` mask), and
stand-ins for the pretrained weights at the paths the configs name
(random weights in the same key layout: the ResNet-38 file under
``checkpoints/`` and mmseg's ``open-mmlab://`` ResNets in the torch hub
cache), so that the real loading paths run and nothing is downloaded.

Every pipeline config is run with ``tools/run_pipeline.py --smoke`` (the
stages as subprocesses of the standard tools, each reading the previous
stage's real outputs); the only overrides are iterations and images (the
smoke mode), batch size and workers. A stage config that no pipeline runs
needs an entry in ``STANDALONE`` (how this module runs it), else
``test_every_config_is_run`` fails.
"""
import glob
import json
import os
import os.path as osp
import re
import subprocess
import sys

import pytest

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
PY = sys.executable
CONFIG_ROOTS = ['configs'] + sorted(
    osp.relpath(p, REPO)
    for p in glob.glob(osp.join(REPO, 'projects', '*', 'configs')))
#: Overrides of every train/test stage (workers, batch size; CPU only).
CPU_OPTIONS = [
    'train_dataloader.batch_size=2', 'train_dataloader.num_workers=0',
    'train_dataloader.persistent_workers=False',
    'val_dataloader.num_workers=0', 'val_dataloader.persistent_workers=False',
    'test_dataloader.num_workers=0',
    'test_dataloader.persistent_workers=False'
]
#: Stage configs that no pipeline runs: how this module runs them.
STANDALONE = {
    'configs/affinitynet/affinitynet-cam_r50-d8_4xb4-15e_voc12aug-448x448.py':
    'test_r50_cam_config_trains_and_exports',
}
VOC_PIPELINE = 'configs/affinitynet/pipeline_affinitynet_resnet38d_voc12aug.py'
SEG_PIPELINES = {
    'configs/affinitynet/pipeline_affinitynet_resnet38d-deeplabv3_voc12aug.py':
    'seg_deeplabv3_r101',
    'configs/affinitynet/'
    'pipeline_affinitynet_resnet38d-deeplabv3plus_voc12aug.py':
    'seg_deeplabv3plus_r101',
}
DEMO_PIPELINE = 'configs/demo/pipeline_affinitynet_r18-d8_demo.py'
#: Pipeline configs run by a test elsewhere: path -> that test's node id.
OTHER_PIPELINES = {
    'projects/coco2014/configs/pipeline_affinitynet_resnet38d_coco2014.py': 'projects/coco2014/tests/test_coco_configs.py::test_coco_pipeline_runs_every_stage',  # noqa: E501
    'configs/demo/pipeline_affinitynet_r18-d8_demo_par.py': 'tests/test_configs/test_run_par_pipeline.py::test_demo_par_pipeline_smoke',  # noqa: E501
}


def _load_tool(name, path):
    import importlib.util
    spec = importlib.util.spec_from_file_location(name, osp.join(REPO, path))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


run_pipeline = _load_tool('run_pipeline', 'tools/run_pipeline.py')


def _all_configs():
    """(stage configs, pipeline configs) under the config roots."""
    from mmengine.config import Config
    stage, pipelines = [], []
    for root in CONFIG_ROOTS:
        for path in sorted(
                glob.glob(osp.join(REPO, root, '**', '*.py'),
                          recursive=True)):
            rel = osp.relpath(path, REPO)
            if '_base_' in rel.split(os.sep) or osp.basename(
                    rel).startswith('_'):
                continue
            if 'stages' in Config.fromfile(path):
                pipelines.append(rel)
            else:
                stage.append(rel)
    return stage, pipelines


def _configs_of_pipeline(path):
    """The configs a pipeline's stages run (from their arguments)."""
    from mmengine.config import Config
    cfg = Config.fromfile(osp.join(REPO, path))
    names = {
        k: v
        for k, v in cfg.items() if isinstance(v, (str, int, float))
    }
    names['smoke_images'] = 1
    found = set()
    for stage in cfg.stages:
        for arg in run_pipeline._fmt(
                list(stage.get('args', [])), names, dry_run=True):
            arg = str(arg)
            if arg.endswith('.py') and arg.split('/')[0] in ('configs',
                                                            'projects'):
                found.add(arg)
    return found


def test_every_config_is_run():
    stage, pipelines = _all_configs()
    assert VOC_PIPELINE in pipelines and DEMO_PIPELINE in pipelines
    run = set(STANDALONE)
    for path in pipelines:
        run |= _configs_of_pipeline(path)
    missing = sorted(set(stage) - run)
    assert not missing, (
        f'configs that no test runs: {missing}; add them to a pipeline '
        'config or to STANDALONE in this module')
    # every pipeline is run by a test of this module
    assert set(pipelines) == ({VOC_PIPELINE, DEMO_PIPELINE}
                              | set(SEG_PIPELINES) | set(OTHER_PIPELINES))
    for path, node in OTHER_PIPELINES.items():
        test_file, name = node.split('::')
        with open(osp.join(REPO, test_file)) as f:
            assert f'def {name}(' in f.read(), (path, node)


def _run(args, cwd, env=None, timeout=3600):
    full_env = dict(os.environ, PYTHONWARNINGS='ignore')
    full_env.update(env or {})
    proc = subprocess.run(
        args, cwd=cwd, env=full_env, capture_output=True, text=True,
        timeout=timeout)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-8000:]
    return out


@pytest.fixture(scope='module')
def workspace(tmp_path_factory):
    """A user's working directory with mini VOC and stand-in weights."""
    ws = tmp_path_factory.mktemp('workspace')
    os.symlink(osp.join(REPO, 'configs'), ws / 'configs')
    _run([
        PY,
        osp.join(REPO, 'tools/dataset_converters/make_mini_voc.py'),
        'data/VOCdevkit/VOC2012'
    ], cwd=ws)
    _run([
        PY,
        osp.join(REPO, 'tools/misc/make_stand_in_weights.py'),
        '--torch-home',
        str(ws / 'torch_home')
    ], cwd=ws)
    return ws


def _env(ws):
    return dict(TORCH_HOME=str(ws / 'torch_home'))


def _pipeline(ws, config, *extra):
    return _run([
        PY,
        osp.join(REPO, 'tools/run_pipeline.py'), config, '--smoke',
        '--smoke-iters', '1', '--smoke-images', '4', '--cfg-options'
    ] + CPU_OPTIONS + list(extra), cwd=ws, env=_env(ws))


def _split(ws, name):
    path = ws / 'data/VOCdevkit/VOC2012/ImageSets/Segmentation' / name
    return path.read_text().split()


@pytest.fixture(scope='module')
def voc_smoke(workspace):
    """The ResNet-38 VOC pipeline, smoke mode, on the mini VOC."""
    out = _pipeline(workspace, VOC_PIPELINE)
    return workspace, out


def test_voc_pipeline_runs_every_stage(voc_smoke):
    ws, out = voc_smoke
    work = ws / 'work_dirs' / 'affinitynet_resnet38d_voc12aug_smoke'
    with open(work / 'summary.json') as f:
        summary = json.load(f)
    assert set(summary) == {
        'cam', 'confident_regions', 'cam_at_rw', 'rw', 'rw_crf',
        'seg_resnet38d'
    }
    for key in ('cam', 'cam_at_rw', 'rw', 'rw_crf', 'seg_resnet38d'):
        assert 0 <= summary[key]['mIoU'] <= 100, summary
    # the smoke subset: the first 4 images of train (scored exports) and
    # of train_aug (the rest), which interleaves SBD-only images (no
    # SegmentationClass mask) with train ones
    train, trainaug = _split(ws, 'train.txt')[:4], _split(
        ws, 'trainaug.txt')[:4]
    assert set(trainaug) - set(_split(ws, 'train.txt'))
    # (the confident regions are written with the CAMs: of both)
    for folder in ('cams', 'conf', 'pseudo_rw', 'pseudo_rw_crf'):
        ids = set(train) | set(trainaug)
        written = sorted(os.listdir(work / folder))
        suffix = '.npz' if folder == 'cams' else '.png'
        assert written == sorted(i + suffix for i in ids), (folder, written)
    # every hand-over stayed in the smoke work dir
    assert not osp.exists(ws / 'work_dirs' / 'affinitynet')
    assert not osp.exists(ws / 'work_dirs' / 'affinitynet_resnet38d_voc12aug')
    assert 'cam_train: finished' in out and 'seg_resnet38d_test: finished' \
        in out


@pytest.mark.parametrize('config', sorted(SEG_PIPELINES))
def test_seg_variant_pipelines_reuse_stages_1_to_4(voc_smoke, config):
    ws, _ = voc_smoke
    out = _pipeline(ws, config)
    for name in ('cam_train', 'cam_export_trainaug', 'aff_train',
                 'rw_export_trainaug'):
        assert f'{name}: done, skipped' in out
    work = ws / 'work_dirs' / 'affinitynet_resnet38d_voc12aug_smoke'
    with open(work / 'summary.json') as f:
        summary = json.load(f)
    assert 0 <= summary[SEG_PIPELINES[config]]['mIoU'] <= 100


def test_r50_cam_config_trains_and_exports(workspace):
    ws = workspace
    config = next(iter(STANDALONE))
    work = ws / 'work_dirs' / 'r50_cam'
    _run([
        PY,
        osp.join(REPO, 'tools/train.py'), config, '--work-dir',
        str(work), '--cfg-options', 'train_cfg.max_iters=1',
        'train_dataloader.dataset.indices=4', 'val_dataloader.dataset.'
        'indices=2'
    ] + CPU_OPTIONS, cwd=ws, env=_env(ws))
    ckpt = (work / 'last_checkpoint').read_text().strip()
    out = _run([
        PY,
        osp.join(REPO, 'tools/test.py'), config, ckpt, '--work-dir',
        str(work), '--cfg-options', f'handover_root={work}',
        'test_dataloader.dataset.indices=2'
    ] + CPU_OPTIONS, cwd=ws, env=_env(ws))
    assert 'mIoU' in out
    assert sorted(os.listdir(work / 'cams')) == [
        f'{i}.npz' for i in _split(ws, 'train.txt')[:2]
    ]


def test_demo_pipeline_smoke(workspace):
    ws = workspace
    _run([
        PY,
        osp.join(REPO, 'tools/run_pipeline.py'), DEMO_PIPELINE, '--smoke',
        '--smoke-iters', '2', '--smoke-images', '4', '--cfg-options',
        'train_dataloader.num_workers=0',
        'train_dataloader.persistent_workers=False'
    ], cwd=ws, env=_env(ws))
    work = ws / 'work_dirs' / 'demo_smoke'
    with open(work / 'summary.json') as f:
        summary = json.load(f)
    assert {'cam', 'confident_regions', 'rw', 'rw_crf', 'seg'} <= set(summary)
    assert osp.isfile(work / 'pipeline.png')
    assert not osp.exists(ws / 'work_dirs' / 'demo')


def test_readme_recipe_is_the_dry_run_output():
    """The README's VOC recipe is what ``--dry-run`` prints."""
    with open(osp.join(REPO, 'README.md')) as f:
        readme = f.read()
    match = re.search(
        r'<!-- dry-run: (\S+) -->\s*```shell\n(.*?)```', readme, re.S)
    assert match, 'README has no <!-- dry-run: CONFIG --> block'
    proc = subprocess.run(
        [PY, osp.join(REPO, 'tools/run_pipeline.py'), match.group(1),
         '--dry-run'],
        cwd=REPO, capture_output=True, text=True, check=True,
        env=dict(os.environ, PYTHONWARNINGS='ignore'))
    assert match.group(2).strip() == proc.stdout.strip()
