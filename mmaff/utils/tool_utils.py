# Copyright (c) mmaff contributors. All rights reserved.
"""What ``tools/train.py`` and ``tools/test.py`` share."""
import os.path as osp
from typing import Optional

from mmengine.config import Config

from .compat import cpu_ddp_wrapper_cfg, init_cpu_distributed
from .handover import resolve_handovers


def add_common_args(parser) -> None:
    """Add ``--cfg-options``, ``--launcher`` and ``--local-rank``.

    Args:
        parser (argparse.ArgumentParser): The tool's parser.
    """
    from mmengine.config import DictAction
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override settings of the config, key=value pairs')
    parser.add_argument(
        '--launcher',
        choices=['none', 'pytorch', 'slurm', 'mpi'],
        default='none',
        help='job launcher')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)


def parse_common_args(parser):
    """Parse, and export ``LOCAL_RANK`` like mmseg's tools.

    Args:
        parser (argparse.ArgumentParser): A parser with
            :func:`add_common_args`.

    Returns:
        argparse.Namespace: The arguments.
    """
    import os
    args = parser.parse_args()
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)
    return args


def load_tool_config(config: str,
                     cfg_options: Optional[dict] = None,
                     work_dir: Optional[str] = None,
                     launcher: str = 'none') -> Config:
    """Load a config the way mmseg's tools do, plus mmaff's CPU fixes.

    The config's hand-overs (``'{handovers.NAME}'``) are filled in after
    ``cfg_options`` (:mod:`mmaff.utils.handover`). The work dir is, by
    priority: ``work_dir``, the config's own, then
    ``./work_dirs/<config name>``. With ``launcher='pytorch'`` on a machine
    without CUDA, a gloo process group is started and the DDP wrapper gets
    no device ids (see :mod:`mmaff.utils.compat`).

    Args:
        config (str): Config path.
        cfg_options (dict, optional): ``--cfg-options`` overrides.
        work_dir (str, optional): ``--work-dir``.
        launcher (str): ``--launcher``. Defaults to 'none'.

    Returns:
        Config: The config, ready for ``Runner.from_cfg``.
    """
    if not osp.isfile(config):
        raise FileNotFoundError(f'config file not found: {config}')
    cfg = Config.fromfile(config)
    cfg.launcher = launcher
    if cfg_options is not None:
        cfg.merge_from_dict(cfg_options)
    resolve_handovers(cfg)
    if work_dir is not None:
        cfg.work_dir = work_dir
    elif cfg.get('work_dir', None) is None:
        cfg.work_dir = osp.join('./work_dirs',
                                osp.splitext(osp.basename(config))[0])
    if launcher != 'none':
        if init_cpu_distributed(launcher):
            cfg.env_cfg.setdefault('dist_cfg', {})['backend'] = 'gloo'
        cpu_ddp_wrapper_cfg(cfg)
    return cfg


def dump_metrics(metrics: dict, path: str) -> None:
    """Write a metrics dict as JSON, atomically.

    Args:
        metrics (dict): Metric name -> value (numpy scalars allowed).
        path (str): Output file.
    """
    from .io import write_json
    plain = {
        k: (v.item() if hasattr(v, 'item') else v)
        for k, v in metrics.items()
    }
    write_json(path, plain, indent=2)


def set_output_dir(cfg: Config, out: str) -> None:
    """``tools/test.py --out``: the evaluator's ``output_dir``, as in mmseg.

    The files mmaff's stages export are hand-overs
    (:mod:`mmaff.utils.handover`): move them with
    ``--cfg-options handovers.NAME=DIR``.

    Args:
        cfg (Config): The config, changed in place.
        out (str): The output folder.

    Raises:
        ValueError: The test evaluator has no ``output_dir``.
    """
    import inspect

    from mmaff.registry import METRICS
    evaluator = cfg.get('test_evaluator') or {}
    metric = METRICS.get(evaluator.get('type', '')) if isinstance(
        evaluator, dict) else None
    if metric is None or 'output_dir' not in inspect.signature(
            metric.__init__).parameters:
        names = ', '.join(sorted(cfg.get('handovers') or {}))
        raise ValueError(
            f'--out sets the test evaluator\'s output_dir (as in mmseg), and '
            f'{evaluator.get("type")!r} has none. The files this config '
            'exports are hand-overs: move them with --cfg-options '
            f'handovers.NAME=DIR (NAME: {names or "none defined"}) or '
            'handover_root=DIR')
    cfg.test_evaluator['output_dir'] = out
    cfg.test_evaluator['keep_results'] = True


def add_random_state_hook(cfg: Config) -> None:
    """Add :class:`mmaff.engine.hooks.RandomStateHook` to a training's
    ``custom_hooks`` unless the config has it: an interrupted training then
    resumes exactly as it would have gone on.

    Args:
        cfg (Config): A training config (changed in place).
    """
    hooks = list(cfg.get('custom_hooks') or [])
    if not any(
            isinstance(h, dict) and h.get('type') in (
                'RandomStateHook', 'mmaff.RandomStateHook') for h in hooks):
        hooks.append(dict(type='mmaff.RandomStateHook'))
    cfg.custom_hooks = hooks


def build_runner(cfg: Config):
    """Build the default Runner or ``cfg.runner_type`` from the registry.

    Args:
        cfg (Config): The config.

    Returns:
        The runner.
    """
    from mmengine.runner import Runner
    if 'runner_type' not in cfg:
        return Runner.from_cfg(cfg)
    from mmaff.registry import RUNNERS
    return RUNNERS.build(cfg)


def finish_distributed() -> None:
    """Tear the process group down in step on every rank.

    Without it, a gloo group can abort a rank at interpreter exit
    ("terminate called without an active exception") after a successful
    run.
    """
    import torch.distributed as dist
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
