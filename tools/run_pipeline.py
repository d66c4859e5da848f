# Copyright (c) mmaff contributors. All rights reserved.
"""Run a whole pipeline (a config set) stage by stage, resumably.

Each stage is one standard tool run (``tools/train.py``, ``tools/test.py``,
or another script of ``tools/``) in a subprocess. A finished stage leaves a
marker ``<work_dir>/.done/<stage>``; a second run skips it, so an
interrupted pipeline resumes where it stopped (an interrupted training
resumes from its last checkpoint with ``--resume``). Metrics that the stages
write are gathered into ``<work_dir>/summary.json``.

Usage:
    python tools/run_pipeline.py configs/demo/pipeline_demo.py
    python tools/run_pipeline.py PIPELINE --launcher pytorch --gpus 4

A pipeline config holds ``work_dir`` and ``stages``, a list of dicts:

* ``name``: the stage's name (marker and log name);
* ``script``: the tool, relative to the repository (``tools/train.py``);
* ``args``: its arguments; ``{work_dir}`` is replaced and
  ``dict(last_checkpoint=DIR)`` stands for the last checkpoint saved in DIR;
* ``distributed`` (bool): launch with torchrun when ``--launcher pytorch``;
* ``resume`` (bool): add ``--resume`` when the stage's work dir has a
  checkpoint from an interrupted run;
* ``summary`` (optional): ``dict(key=..., file=..., fields=None)`` or a
  list of them: copies the JSON metrics the stage wrote (all, or the
  ``fields``: a list of names, or a dict ``{name in file: name in summary}``)
  under ``key`` of the summary.
"""
import argparse
import glob
import json
import os
import os.path as osp
import subprocess
import sys
import time

from mmengine.config import Config

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))


def _fmt(value, work_dir: str):
    """Fill ``{work_dir}``; ``dict(last_checkpoint=DIR)`` becomes the path
    that mmengine recorded in ``DIR/last_checkpoint``."""
    if isinstance(value, str):
        return value.replace('{work_dir}', work_dir)
    if isinstance(value, (list, tuple)):
        return [_fmt(v, work_dir) for v in value]
    if isinstance(value, dict) and 'last_checkpoint' in value:
        record = osp.join(_fmt(value['last_checkpoint'], work_dir),
                          'last_checkpoint')
        if not osp.isfile(record):
            raise FileNotFoundError(
                f'no checkpoint recorded in {record}: did training finish?')
        with open(record) as f:
            return f.read().strip()
    return value


def _stage_command(stage: dict, work_dir: str, launcher: str,
                   gpus: int) -> list:
    script = osp.join(REPO, stage['script'])
    args = [str(a) for a in _fmt(list(stage.get('args', [])), work_dir)]
    if stage.get('resume'):
        stage_dir = _fmt(stage['resume_dir'], work_dir)
        if glob.glob(osp.join(stage_dir, 'iter_*.pth')) or glob.glob(
                osp.join(stage_dir, 'epoch_*.pth')):
            args.append('--resume')
    if stage.get('distributed') and launcher == 'pytorch':
        return [
            sys.executable, '-m', 'torch.distributed.run',
            f'--nproc_per_node={gpus}',
            f"--master_port={os.environ.get('PORT', 29500)}", script
        ] + args + ['--launcher', 'pytorch']
    return [sys.executable, script] + args


def _update_summary(path: str, key: str, values: dict) -> dict:
    from mmaff.utils.tool_utils import dump_metrics
    summary = {}
    if osp.isfile(path):
        with open(path) as f:
            summary = json.load(f)
    summary[key] = values
    dump_metrics(summary, path)
    return summary


def run_pipeline(config: str,
                 launcher: str = 'none',
                 gpus: int = 1,
                 only: list = None) -> dict:
    """Run (or resume) the stages of a pipeline config.

    Args:
        config (str): The pipeline config.
        launcher (str): 'none' or 'pytorch'.
        gpus (int): Processes per distributed stage.
        only (list, optional): Run just these stages (still skipping done).

    Returns:
        dict: The summary.
    """
    cfg = Config.fromfile(config)
    work_dir = cfg.work_dir
    done_dir = osp.join(work_dir, '.done')
    os.makedirs(done_dir, exist_ok=True)
    summary_path = osp.join(work_dir, 'summary.json')
    names = [s['name'] for s in cfg.stages]
    if len(set(names)) != len(names):
        raise ValueError(f'{config}: stage names must be unique: {names}')
    for stage in cfg.stages:
        name = stage['name']
        marker = osp.join(done_dir, name)
        if only and name not in only:
            continue
        if osp.isfile(marker):
            print(f'[pipeline] {name}: done, skipped', flush=True)
            continue
        cmd = _stage_command(stage, work_dir, launcher, gpus)
        print(f'[pipeline] {name}: {" ".join(cmd)}', flush=True)
        log_path = osp.join(work_dir, 'logs', f'{name}.log')
        os.makedirs(osp.dirname(log_path), exist_ok=True)
        start = time.time()
        with open(log_path, 'a') as log:
            proc = subprocess.run(
                cmd, cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
        if proc.returncode != 0:
            with open(log_path) as f:
                tail = f.read()[-3000:]
            raise RuntimeError(
                f'stage {name!r} failed (exit {proc.returncode}); its log: '
                f'{log_path}\n...{tail}')
        specs = stage.get('summary') or []
        for spec in [specs] if isinstance(specs, dict) else specs:
            with open(_fmt(spec['file'], work_dir)) as f:
                metrics = json.load(f)
            fields = spec.get('fields')
            if isinstance(fields, dict):
                metrics = {new: metrics[old] for old, new in fields.items()}
            elif fields:
                metrics = {k: metrics[k] for k in fields}
            _update_summary(summary_path, spec['key'], metrics)
        with open(marker, 'w') as f:
            f.write(f'{time.time() - start:.1f} s\n')
        print(f'[pipeline] {name}: finished in {time.time() - start:.0f} s',
              flush=True)
    summary = {}
    if osp.isfile(summary_path):
        with open(summary_path) as f:
            summary = json.load(f)
    print(json.dumps(summary, indent=2))
    return summary


def main():
    parser = argparse.ArgumentParser(description='Run an mmaff pipeline')
    parser.add_argument('config', help='pipeline config')
    parser.add_argument(
        '--launcher', choices=['none', 'pytorch'], default='none')
    parser.add_argument(
        '--gpus', type=int, default=1, help='processes per stage')
    parser.add_argument('--only', nargs='+', help='run only these stages')
    args = parser.parse_args()
    run_pipeline(args.config, args.launcher, args.gpus, args.only)


if __name__ == '__main__':
    main()
