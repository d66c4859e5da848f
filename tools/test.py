# Copyright (c) mmaff contributors. All rights reserved.
"""Test (evaluate, visualise, export) a model, like mmseg's tool.

The files a stage config exports (CAMs, pseudo labels) are its hand-overs:
``--cfg-options handover_root=DIR`` moves them all, ``handovers.NAME=DIR``
one (see ``configs/_base_/handovers.py``). ``--out DIR`` is mmseg's: the
evaluator's ``output_dir``. ``CHECKPOINT`` may be a training's work dir,
which stands for the checkpoint it saved last.
"""
import argparse


import mmaff  # noqa: F401  (applies mmaff.utils.compat before mmseg.models)
from mmaff.utils.tool_utils import (add_common_args, build_runner,
                                    dump_metrics, finish_distributed,
                                    load_tool_config, parse_common_args,
                                    set_output_dir)


def parse_args():
    parser = argparse.ArgumentParser(description='Test an mmaff model')
    parser.add_argument('config', help='test config file path')
    parser.add_argument(
        'checkpoint', help='checkpoint file, or a work dir (its last one)')
    parser.add_argument(
        '--work-dir', help='the dir to save the evaluation metrics')
    parser.add_argument(
        '--out', type=str, help='the evaluator\'s output_dir (as in mmseg)')
    parser.add_argument(
        '--metrics-out',
        help='write the returned metrics to this JSON file (rank 0)')
    parser.add_argument(
        '--show', action='store_true', help='show prediction results')
    parser.add_argument(
        '--show-dir', help='directory where painted images will be saved')
    parser.add_argument(
        '--wait-time', type=float, default=2, help='the interval of show (s)')
    add_common_args(parser)
    return parse_common_args(parser)


def main():
    args = parse_args()
    cfg = load_tool_config(args.config, args.cfg_options, args.work_dir,
                           args.launcher)
    cfg.load_from = args.checkpoint
    # A test run trains nothing: without the training settings no training
    # data is read (mmseg's visualization hook asks the runner for its
    # training iteration, which would build the training loop and its data
    # loader, e.g. stage 3's confident regions in a stage-4 run).
    for key in ('train_dataloader', 'train_cfg', 'optim_wrapper',
                'param_scheduler'):
        cfg[key] = None
    if args.show or args.show_dir:
        vis = cfg.default_hooks.get('visualization')
        if vis is None:
            raise RuntimeError('--show/--show-dir need a visualization hook '
                               'in default_hooks')
        vis['draw'] = True
        if args.show:
            vis['show'] = True
            vis['wait_time'] = args.wait_time
        if args.show_dir:
            cfg.visualizer['save_dir'] = args.show_dir
    if args.out is not None:
        set_output_dir(cfg, args.out)
    metrics = build_runner(cfg).test()
    if args.metrics_out:
        from mmengine.dist import is_main_process
        if is_main_process():
            dump_metrics(metrics, args.metrics_out)
    finish_distributed()


if __name__ == '__main__':
    main()
