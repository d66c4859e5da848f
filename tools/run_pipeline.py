# Copyright (c) mmaff contributors. All rights reserved.
"""Run a whole pipeline (a config set) stage by stage, resumably.

Each stage is one standard tool run (``tools/train.py``, ``tools/test.py``,
or another script of ``tools/``) in a subprocess, in the current working
directory (like mmseg's tools: data and ``work_dirs`` are relative to it).
A finished stage leaves a marker ``<work_dir>/.done/<stage>``; a second run
skips it, so an interrupted pipeline resumes where it stopped (an
interrupted training resumes from its last checkpoint with ``--resume``).
Metrics that the stages write are gathered into ``<work_dir>/summary.json``.

Usage:
    make demo   # the demo's pipeline config, configs/demo/pipeline_*.py
    python tools/run_pipeline.py PIPELINE --launcher pytorch --gpus 4
    python tools/run_pipeline.py PIPELINE --dry-run   # print the commands
    python tools/run_pipeline.py PIPELINE --smoke     # minutes, not days

``--smoke`` runs the whole chain in ``<work_dir>_smoke`` on the first
``--smoke-images`` images of every split with ``--smoke-iters`` iterations
per training (batch sizes, crop sizes, weights and paths as configured),
so that data layout, weights, paths and GPUs are checked before a long run.
``--cfg-options`` are passed to every ``tools/train.py`` / ``tools/test.py``
stage whose config has the option's parent section (e.g.
``train_dataloader.num_workers=0`` skips a test-only stage's config that
has no ``train_dataloader``).

A pipeline config holds ``work_dir``, ``stages`` and any other top-level
string or number, which ``{name}`` in a stage's strings stands for. With
the hand-overs base (``configs/_base_/handovers.py``), ``{handovers.NAME}``
stands for a hand-over under ``work_dir``, and every stage whose config
defines hand-overs (``tools/train.py``/``tools/test.py``, or a tool given
``--config``) runs with ``--cfg-options handover_root=<work_dir>``, so the
stages find each other's files wherever the pipeline's work dir is.
``stages`` is a list of dicts:

* ``name``: the stage's name (marker and log name);
* ``script``: the tool, relative to the repository (``tools/train.py``);
* ``args``: its arguments; ``{work_dir}`` (and ``{name}`` of any other
  top-level key, ``{smoke_images}`` included) is filled in, and
  ``{last_checkpoint:DIR}`` stands for the last checkpoint saved in DIR
  (``dict(last_checkpoint=DIR)`` for a whole argument), and
  ``{metric:FILE:KEY}`` for a value an earlier stage measured (``KEY`` of
  the JSON metrics ``FILE``, e.g. the CAM sweep's ``bg_threshold``);
* ``distributed`` (bool): launch with torchrun when ``--launcher pytorch``;
* ``resume`` (bool): add ``--resume`` when the stage's work dir
  (``resume_dir``) has a checkpoint from an interrupted run;
* ``smoke_args`` (list, optional): ``--cfg-options`` added under
  ``--smoke`` (for tools other than train/test, e.g. a dataset subset);
* ``summary`` (optional): ``dict(key=..., file=..., fields=None)`` or a
  list of them: copies the JSON metrics the stage wrote (all, or the
  ``fields``: a list of names, or a dict ``{name in file: name in summary}``)
  under ``key`` of the summary; ``file`` defaults to the stage's
  ``--metrics-out``.
"""
import argparse
import glob
import json
import os
import os.path as osp
import re
import shlex
import subprocess
import sys
import time
from typing import List, Optional

from mmengine.config import Config, DictAction

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
#: The standard tools, whose configs --smoke and --cfg-options adapt.
_CONFIG_TOOLS = ('tools/train.py', 'tools/test.py')
_CKPT = re.compile(r'\{last_checkpoint:([^{}]+)\}')
_METRIC = re.compile(r'\{metric:([^{}:]+):(\w+)\}')
_DRY_CKPT = '\0ckpt\0'  # marks a checkpoint read at run time (dry run)
_DRY_METRIC = '\0metric\0'  # marks a measured value (dry run)


def _measured(path: str, key: str, dry_run: bool = False) -> str:
    """``key`` of the JSON metrics an earlier stage wrote to ``path``."""
    if dry_run:
        return f'{_DRY_METRIC}{key} of {path}{_DRY_METRIC}'
    if not osp.isfile(path):
        raise FileNotFoundError(
            f'{path} does not exist: the stage that measures {key!r} has '
            'not run')
    with open(path) as f:
        metrics = json.load(f)
    if key not in metrics:
        raise KeyError(f'{path} has no {key!r} (keys: {sorted(metrics)})')
    return str(metrics[key])


def _last_checkpoint(folder: str, dry_run: bool = False) -> str:
    """The path mmengine recorded in ``folder/last_checkpoint``."""
    record = osp.join(folder, 'last_checkpoint')
    if dry_run:
        return f'{_DRY_CKPT}{record}{_DRY_CKPT}'
    if not osp.isfile(record):
        raise FileNotFoundError(
            f'no checkpoint recorded in {record}: did training finish?')
    with open(record) as f:
        return f.read().strip()


def _fmt(value, work_dir, dry_run: bool = False):
    """Fill the placeholders of a stage's value.

    Args:
        value: A string, a list of values or ``dict(last_checkpoint=DIR)``.
        work_dir (str | dict): The work dir, or the mapping of every
            placeholder name (``work_dir`` included) to its value.
        dry_run (bool): Do not read checkpoints; mark them for display.
    """
    names = work_dir if isinstance(work_dir, dict) else dict(
        work_dir=work_dir)
    if isinstance(value, str):
        for _ in range(8):  # names may use names ('{work_dir}/seg')
            filled = re.sub(
                r'\{([\w.]+)\}', lambda m: str(names[m.group(1)])
                if m.group(1) in names else m.group(0), value)
            if filled == value:
                break
            value = filled
        value = _METRIC.sub(
            lambda m: _measured(m.group(1), m.group(2), dry_run), value)
        return _CKPT.sub(
            lambda m: _last_checkpoint(m.group(1), dry_run), value)
    if isinstance(value, (list, tuple)):
        return [_fmt(v, names, dry_run) for v in value]
    if isinstance(value, dict) and 'last_checkpoint' in value:
        return _last_checkpoint(
            _fmt(value['last_checkpoint'], names, dry_run), dry_run)
    return value


def _has_parent(cfg: Config, key: str) -> bool:
    """Whether the section that ``key`` (``a.b.c``) sets exists in cfg."""
    node = dict(cfg.items())
    for part in key.split('.')[:-1]:
        if isinstance(node, (list, tuple)) and part.isdigit():
            if int(part) >= len(node):
                return False
            node = node[int(part)]
        elif isinstance(node, dict) and isinstance(node.get(part), (dict,
                                                                    list)):
            node = node[part]
        else:
            return False
    return True


def _smoke_options(cfg: Config, train: bool, iters: int,
                   images: int) -> List[str]:
    """``--cfg-options`` of a smoke run: the first images, a few iters."""
    opts = []
    if train:
        loop = cfg.get('train_cfg') or {}
        opts.append(f'train_cfg.max_iters={iters}' if 'max_iters' in
                    loop else 'train_cfg.max_epochs=1')
    for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        if not train and loader != 'test_dataloader':
            continue
        if isinstance(cfg.get(loader), dict) and isinstance(
                cfg[loader].get('dataset'), dict):
            opts.append(f'{loader}.dataset.indices={images}')
    return opts


def _stage_command(stage: dict,
                   work_dir,
                   launcher: str,
                   gpus: int,
                   smoke: Optional[dict] = None,
                   cfg_options: Optional[dict] = None,
                   amp: bool = False,
                   dry_run: bool = False) -> list:
    """The command line of one stage.

    Args:
        stage (dict): The stage.
        work_dir (str | dict): The work dir or all placeholder values.
        launcher (str): 'none' or 'pytorch'.
        gpus (int): Processes of a distributed stage.
        smoke (dict, optional): ``iters`` and ``images`` of a smoke run.
        cfg_options (dict, optional): Options for train/test stages.
        amp (bool): Add ``--amp`` to training stages.
        dry_run (bool): Leave checkpoints unread (marked for display).

    Returns:
        list[str]: The command.
    """
    names = work_dir if isinstance(work_dir, dict) else dict(
        work_dir=work_dir)
    script = osp.join(REPO, stage['script'])
    args = [str(a) for a in _fmt(list(stage.get('args', [])), names, dry_run)]
    if stage.get('resume'):
        stage_dir = _fmt(stage['resume_dir'], names)
        if glob.glob(osp.join(stage_dir, 'iter_*.pth')) or glob.glob(
                osp.join(stage_dir, 'epoch_*.pth')):
            args.append('--resume')
    options = []
    config = args[0] if stage['script'] in _CONFIG_TOOLS else (
        args[args.index('--config') + 1] if '--config' in args else None)
    if config is not None and osp.isfile(config) and Config.fromfile(
            config).get('handovers'):
        options.append(f"handover_root={names['work_dir']}")
    if stage['script'] in _CONFIG_TOOLS and (smoke or cfg_options):
        cfg = Config.fromfile(args[0])
        if smoke:
            options += _smoke_options(cfg, stage['script'] == _CONFIG_TOOLS[0],
                                      smoke['iters'], smoke['images'])
        for key, value in (cfg_options or {}).items():
            if _has_parent(cfg, key):
                if isinstance(value, (list, tuple)):
                    value = f'[{",".join(str(v) for v in value)}]'
                options.append(f'{key}={value}')
    if smoke and stage.get('smoke_args'):
        options += [str(a) for a in _fmt(list(stage['smoke_args']), names)]
    if options:
        if '--cfg-options' in args:
            at = args.index('--cfg-options') + 1
            args[at:at] = options
        else:
            args += ['--cfg-options'] + options
    if amp and stage['script'] == _CONFIG_TOOLS[0]:
        args.append('--amp')
    if stage.get('distributed') and launcher == 'pytorch':
        return [
            sys.executable, '-m', 'torch.distributed.run',
            f'--nproc_per_node={gpus}',
            f"--master_port={os.environ.get('PORT', 29500)}", script
        ] + args + ['--launcher', 'pytorch']
    return [sys.executable, script] + args


def format_command(cmd: List[str]) -> str:
    """A command as a user would type it in the repository's root.

    The interpreter shows as ``python``, the repository's scripts by their
    relative path, and a checkpoint known only at run time as
    ``"$(cat DIR/last_checkpoint)"``.
    """
    shown = []
    for i, arg in enumerate(cmd):
        if i == 0 and arg == sys.executable:
            shown.append('python')
        elif arg.startswith(REPO + os.sep):
            shown.append(shlex.quote(osp.relpath(arg, REPO)))
        elif _DRY_CKPT in arg:
            parts = arg.split(_DRY_CKPT)
            shown.append('"' + ''.join(
                f'$(cat {p})' if k % 2 else p
                for k, p in enumerate(parts)) + '"')
        elif _DRY_METRIC in arg:
            parts = arg.split(_DRY_METRIC)
            shown.append('"' + ''.join(
                f'<{p}>' if k % 2 else p for k, p in enumerate(parts)) + '"')
        else:
            shown.append(shlex.quote(arg))
    return ' '.join(shown)


def _arg_after(cmd: List[str], flag: str) -> str:
    """The value of ``flag`` in a command (a summary's default file)."""
    if flag not in cmd:
        raise ValueError(f'a stage summary without `file` needs {flag} in '
                         f'the command: {format_command(cmd)}')
    return cmd[cmd.index(flag) + 1]


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
                 only: Optional[list] = None,
                 dry_run: bool = False,
                 smoke: bool = False,
                 smoke_iters: int = 2,
                 smoke_images: int = 4,
                 cfg_options: Optional[dict] = None,
                 amp: bool = False) -> dict:
    """Run (or resume) the stages of a pipeline config.

    Args:
        config (str): The pipeline config.
        launcher (str): 'none' or 'pytorch'.
        gpus (int): Processes per distributed stage.
        only (list, optional): Run just these stages (still skipping done).
        dry_run (bool): Print the commands of the stages still to run, run
            nothing.
        smoke (bool): A smoke run in ``<work_dir>_smoke`` (module doc).
        smoke_iters (int): Training iterations of a smoke run.
        smoke_images (int): Images of every split in a smoke run.
        cfg_options (dict, optional): Options for the train/test stages.
        amp (bool): Mixed-precision training stages (``--amp``).

    Returns:
        dict: The summary (empty for a dry run).
    """
    cfg = Config.fromfile(config)
    names = {
        k: v
        for k, v in cfg.items()
        if isinstance(v, (str, int, float)) and not isinstance(v, bool)
    }
    if smoke:
        names['work_dir'] = cfg.work_dir.rstrip('/') + '_smoke'
    names['smoke_images'] = smoke_images
    work_dir = names['work_dir']
    if cfg.get('handovers'):
        from mmaff.utils.handover import handover_values
        handovers = handover_values(dict(
            handovers=cfg.handovers, handover_root=work_dir))
        names.update({f'handovers.{k}': v for k, v in handovers.items()})
    smoke_cfg = dict(iters=smoke_iters, images=smoke_images) if smoke \
        else None
    done_dir = osp.join(work_dir, '.done')
    summary_path = osp.join(work_dir, 'summary.json')
    stage_names = [_fmt(s['name'], names) for s in cfg.stages]
    if len(set(stage_names)) != len(stage_names):
        raise ValueError(
            f'{config}: stage names must be unique: {stage_names}')
    if not dry_run:
        os.makedirs(done_dir, exist_ok=True)
    for stage, name in zip(cfg.stages, stage_names):
        marker = osp.join(done_dir, name)
        if only and name not in only:
            continue
        if osp.isfile(marker):
            print(f'[pipeline] {name}: done, skipped', flush=True)
            continue
        cmd = _stage_command(stage, names, launcher, gpus, smoke_cfg,
                             cfg_options, amp, dry_run)
        if dry_run:
            print(f'# {name}\n{format_command(cmd)}', flush=True)
            continue
        print(f'[pipeline] {name}: {format_command(cmd)}', flush=True)
        log_path = osp.join(work_dir, 'logs', f'{name}.log')
        os.makedirs(osp.dirname(log_path), exist_ok=True)
        start = time.time()
        with open(log_path, 'a') as log:
            proc = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT)
        if proc.returncode != 0:
            with open(log_path) as f:
                tail = f.read()[-3000:]
            raise RuntimeError(
                f'stage {name!r} failed (exit {proc.returncode}); its log: '
                f'{log_path}\n...{tail}')
        specs = stage.get('summary') or []
        for spec in [specs] if isinstance(specs, dict) else specs:
            file = spec.get('file')
            if file is None:
                file = _arg_after(cmd, '--metrics-out')
            with open(_fmt(file, names)) as f:
                metrics = json.load(f)
            fields = spec.get('fields')
            if isinstance(fields, dict):
                metrics = {new: metrics[old] for old, new in fields.items()}
            elif fields:
                metrics = {k: metrics[k] for k in fields}
            _update_summary(summary_path, _fmt(spec['key'], names), metrics)
        with open(marker, 'w') as f:
            f.write(f'{time.time() - start:.1f} s\n')
        print(f'[pipeline] {name}: finished in {time.time() - start:.0f} s',
              flush=True)
    if dry_run:
        return {}
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
    parser.add_argument(
        '--dry-run',
        action='store_true',
        help='print the commands of the stages still to run')
    parser.add_argument(
        '--smoke',
        action='store_true',
        help='check the whole chain in minutes: <work_dir>_smoke, the '
        'first images of every split, a few iterations per training')
    parser.add_argument(
        '--smoke-iters', type=int, default=2, help='iterations (--smoke)')
    parser.add_argument(
        '--smoke-images', type=int, default=4, help='images (--smoke)')
    parser.add_argument(
        '--amp', action='store_true', help='mixed-precision training')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='key=value options for every train/test stage whose config '
        'has the key\'s section')
    args = parser.parse_args()
    run_pipeline(args.config, args.launcher, args.gpus, args.only,
                 args.dry_run, args.smoke, args.smoke_iters,
                 args.smoke_images, args.cfg_options, args.amp)


if __name__ == '__main__':
    main()
