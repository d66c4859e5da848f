# Copyright (c) mmaff contributors. All rights reserved.
"""The short GPU check: the VOC recipe on CUDA at the configs' real sizes,
plus the random-walk and export benchmarks on the GPU (about 8 minutes).

Usage (on a machine with one CUDA GPU, from the repository root)::

    python tools/analysis_tools/gpu_check.py [--out work_dirs/gpu_check]

What it does, in ``--out``:

1. a miniature VOC 2012 + SBD tree of VOC-size images (500 x 375 and
   375 x 500; ``tools/dataset_converters/make_mini_voc.py``) and random
   stand-in weights where the configs look for pretrained ones
   (``tools/misc/make_stand_in_weights.py``);
2. ``tools/run_pipeline.py`` on the ResNet-38 VOC pipeline and its
   DeepLabV3 variant in smoke mode (``--smoke-iters``, ``--smoke-images``),
   unchanged otherwise: the configs' crop sizes and batch sizes, mixed
   precision with ``--amp``;
3. ``benchmark_random_walk.py --device cuda``,
   ``benchmark_pseudo_label_export.py --device cuda`` and
   ``benchmark_refiners.py --device cuda --batch 8 --skip-quality`` (ms
   per VOC-size image of the dCRF on the CPU and of PAR on CPU and GPU).

It prints, and writes to ``<out>/gpu_check.json``: img/s and peak GPU
memory (MiB, as mmengine logs it) of each training stage, s per stage, the
three benchmarks' figures. Record them in ``docs/benchmarks.md``.
"""
import argparse
import json
import os
import os.path as osp
import re
import subprocess
import sys
import time

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
PIPELINES = (
    'configs/affinitynet/pipeline_affinitynet_resnet38d_voc12aug.py',
    'configs/affinitynet/pipeline_affinitynet_resnet38d-deeplabv3_voc12aug.py')
#: An mmengine training log line: iteration, max, s/iter and memory (MiB).
_ITER = re.compile(r'Iter\(train\) \[\s*(\d+)/\s*(\d+)\].*?\btime: '
                   r'([\d.]+).*?\bmemory: (\d+)')


def _run(cmd, cwd, env, log):
    start = time.time()
    with open(log, 'w') as f:
        proc = subprocess.run(cmd, cwd=cwd, env=env, stdout=f,
                              stderr=subprocess.STDOUT)
    if proc.returncode != 0:
        with open(log) as f:
            raise RuntimeError(f'{" ".join(cmd)} failed:\n{f.read()[-4000:]}')
    return time.time() - start


def training_figures(log_path: str, batch_size: int) -> dict:
    """img/s (median over logged iterations after the first) and peak
    memory from an mmengine training log."""
    with open(log_path) as f:
        rows = [(int(m.group(1)), float(m.group(3)), int(m.group(4)))
                for m in _ITER.finditer(f.read())]
    if not rows:
        return {}
    times = sorted(t for _, t, _ in rows[1:] or rows)
    median = times[len(times) // 2]
    return dict(
        img_per_s=round(batch_size / median, 2),
        s_per_iter=median,
        peak_memory_mib=max(m for _, _, m in rows))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--out', default='work_dirs/gpu_check')
    parser.add_argument('--smoke-iters', type=int, default=30)
    parser.add_argument('--smoke-images', type=int, default=16)
    parser.add_argument('--no-amp', action='store_true')
    args = parser.parse_args()
    out = osp.abspath(args.out)
    os.makedirs(out, exist_ok=True)
    for name in ('configs', 'tools'):
        if not osp.exists(osp.join(out, name)):
            os.symlink(osp.join(REPO, name), osp.join(out, name))
    env = dict(os.environ, TORCH_HOME=osp.join(out, 'torch_home'))
    py = sys.executable
    report = dict(stages={}, training={}, benchmarks={})
    _run([
        py, 'tools/dataset_converters/make_mini_voc.py',
        'data/VOCdevkit/VOC2012', '--size', '500', '--num-train', '24',
        '--num-aug', '8', '--num-val', '16'
    ], out, env, osp.join(out, 'data.log'))
    _run([py, 'tools/misc/make_stand_in_weights.py'], out, env,
         osp.join(out, 'weights.log'))
    for pipeline in PIPELINES:
        cmd = [
            py, 'tools/run_pipeline.py', pipeline, '--smoke',
            '--smoke-iters',
            str(args.smoke_iters), '--smoke-images',
            str(args.smoke_images), '--cfg-options',
            'default_hooks.logger.interval=5'
        ] + ([] if args.no_amp else ['--amp'])
        _run(cmd, out, env,
             osp.join(out, osp.basename(pipeline)[:-3] + '.log'))
    from mmengine.config import Config
    work = osp.join(out, 'work_dirs', 'affinitynet_resnet38d_voc12aug_smoke')
    for marker in sorted(os.listdir(osp.join(work, '.done'))):
        with open(osp.join(work, '.done', marker)) as f:
            report['stages'][marker] = f.read().strip()
    pipe = Config.fromfile(osp.join(REPO, PIPELINES[0]))
    for stage, config in (('cam_train', pipe.cam_config),
                          ('aff_train', pipe.aff_config),
                          ('seg_resnet38d_train', pipe.seg_config),
                          ('seg_deeplabv3_r101_train',
                           Config.fromfile(osp.join(
                               REPO, PIPELINES[1])).seg_config)):
        batch = Config.fromfile(osp.join(REPO,
                                         config)).train_dataloader.batch_size
        report['training'][stage] = training_figures(
            osp.join(work, 'logs', f'{stage}.log'), batch)
    for name, extra in (('benchmark_random_walk', ['--no-busy']),
                        ('benchmark_pseudo_label_export', []),
                        ('benchmark_refiners',
                         ['--batch', '8', '--skip-quality'])):
        result = osp.join(out, f'{name}.json')
        _run([
            py, f'tools/analysis_tools/{name}.py', '--device', 'cuda',
            '--out', result
        ] + extra, out, env, osp.join(out, f'{name}.log'))
        with open(result) as f:
            report['benchmarks'][name] = json.load(f)
    with open(osp.join(work, 'summary.json')) as f:
        report['summary'] = json.load(f)
    with open(osp.join(out, 'gpu_check.json'), 'w') as f:
        json.dump(report, f, indent=2)
    print(json.dumps(report, indent=2))


if __name__ == '__main__':
    main()
