# Copyright (c) mmaff contributors. All rights reserved.
"""Two runs of the demo's CAM training give bitwise identical weights, and
so does a run interrupted halfway and resumed.

``make demo`` must write the same ``summary.json`` twice. Its first
training stage is run here as ``make demo`` runs it (``tools/run_pipeline.py``
on the demo pipeline, which starts ``tools/train.py`` in a subprocess), in
two fresh working directories on the same tiny generated demo set. The only
overrides are iterations and images (``--smoke``), the batch size and two
intra-op threads (the demo machine's 2 cores, whatever the test runner
sets); the data loader keeps the demo's two persistent workers, so worker
seeding, the sampler, the random augmentations (ColorJitter included),
dropout and multi-threaded kernels all take part.
"""
import importlib.util
import os
import os.path as osp

import pytest
import torch
from mmengine.config import Config
from mmaff_testing import DEMO_CAM, run_tool_process

from mmaff.utils.compat import load_checkpoint_file

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
DEMO_PIPELINE = 'configs/demo/pipeline_affinitynet_r18-d8_demo.py'
ITERS = 4
IMAGES = 4


def _make_demo_dataset(root):
    path = osp.join(REPO, 'tools', 'dataset_converters',
                    'make_demo_dataset.py')
    spec = importlib.util.spec_from_file_location('make_demo_dataset_det',
                                                  path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.generate(
        str(root), num_train=IMAGES, num_val=2, show_progress=False)


def _train_cam(ws, data, run_tool, iters=ITERS):
    """The demo pipeline's ``cam_train`` stage in working directory ``ws``
    for ``iters`` iterations (resuming from the checkpoint a previous call in
    ``ws`` left, as ``make demo`` resumes an interrupted stage); returns the
    weights it saved."""
    if not osp.isdir(ws / 'data'):
        os.makedirs(ws / 'data')
        os.symlink(osp.join(REPO, 'configs'), ws / 'configs')
        os.symlink(data, ws / 'data' / 'demo')
    done = ws / 'work_dirs' / 'demo_smoke' / '.done' / 'cam_train'
    if done.exists():
        done.unlink()  # "interrupted": the stage runs again and resumes
    args = [
        osp.join(REPO, 'tools', 'run_pipeline.py'), DEMO_PIPELINE, '--smoke',
        '--smoke-iters', iters, '--smoke-images', IMAGES, '--only',
        'cam_train', '--cfg-options', 'train_dataloader.batch_size=4'
    ]
    run_tool(args, cwd=ws, env=dict(OMP_NUM_THREADS='2'))
    work = ws / 'work_dirs' / 'demo_smoke' / 'cam'
    ckpt = (work / 'last_checkpoint').read_text().strip()
    assert osp.basename(ckpt) == f'iter_{iters}.pth', ckpt
    return load_checkpoint_file(ckpt, map_location='cpu')['state_dict']


def _differences(first, second):
    assert first.keys() == second.keys()
    return {
        key: (first[key].double() - second[key].double()).abs().max().item()
        for key in first if not torch.equal(first[key], second[key])
    }


@pytest.fixture(scope='module')
def uninterrupted(tmp_path_factory):
    """Data and the weights of one uninterrupted run."""
    root = tmp_path_factory.mktemp('determinism')
    data = root / 'data'
    _make_demo_dataset(data)
    ws = root / 'run_a'
    ws.mkdir()
    return data, _train_cam(ws, data, run_tool_process)


def test_demo_runtime_is_seeded():
    cfg = Config.fromfile(osp.join(REPO, DEMO_CAM))
    assert cfg.randomness.get('seed') is not None
    assert not cfg.randomness.get('diff_rank_seed', False)
    # the setting whose worker seeding the training test exercises
    assert cfg.train_dataloader.num_workers == 2
    assert cfg.train_dataloader.persistent_workers


def test_demo_cam_training_is_bitwise_reproducible(uninterrupted, tmp_path,
                                                   run_tool):
    data, first = uninterrupted
    second = _train_cam(tmp_path, data, run_tool)
    differ = _differences(first, second)
    assert not differ, (f'{len(differ)} of {len(first)} tensors differ '
                        f'(max |diff|): {differ}')


def test_a_resumed_training_ends_as_the_uninterrupted_one(
        uninterrupted, tmp_path, run_tool):
    """Stopped after half the iterations and resumed: the same weights
    (RandomStateHook restores the dropout generator; without it 111 of 133
    tensors differ)."""
    data, first = uninterrupted
    _train_cam(tmp_path, data, run_tool, iters=ITERS // 2)
    resumed = _train_cam(tmp_path, data, run_tool)
    differ = _differences(first, resumed)
    assert not differ, (f'{len(differ)} of {len(first)} tensors differ '
                        f'(max |diff|): {differ}')
