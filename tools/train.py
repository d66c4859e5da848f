# Copyright (c) mmaff contributors. All rights reserved.
"""Train any mmaff stage (or mmseg model) from a config, like mmseg's tool."""
import argparse
import logging

from mmengine.logging import print_log

import mmaff  # noqa: F401  (applies mmaff.utils.compat before mmseg.models)
from mmaff.utils.tool_utils import (add_common_args, add_random_state_hook,
                                    build_runner,
                                    finish_distributed, load_tool_config,
                                    parse_common_args)


def parse_args():
    parser = argparse.ArgumentParser(description='Train an mmaff model')
    parser.add_argument('config', help='train config file path')
    parser.add_argument('--work-dir', help='the dir to save logs and models')
    parser.add_argument(
        '--resume',
        action='store_true',
        default=False,
        help='resume from the latest checkpoint in the work_dir')
    parser.add_argument(
        '--amp',
        action='store_true',
        default=False,
        help='enable automatic-mixed-precision training')
    add_common_args(parser)
    return parse_common_args(parser)


def main():
    args = parse_args()
    cfg = load_tool_config(args.config, args.cfg_options, args.work_dir,
                           args.launcher)
    if args.amp:
        if cfg.optim_wrapper.type == 'AmpOptimWrapper':
            print_log('AMP training is already enabled in your config.',
                      logger='current', level=logging.WARNING)
        elif cfg.optim_wrapper.type != 'OptimWrapper':
            raise ValueError('--amp needs optim_wrapper.type OptimWrapper, '
                             f'got {cfg.optim_wrapper.type}')
        else:
            cfg.optim_wrapper.type = 'AmpOptimWrapper'
            cfg.optim_wrapper.loss_scale = 'dynamic'
    cfg.resume = args.resume
    add_random_state_hook(cfg)
    build_runner(cfg).train()
    finish_distributed()


if __name__ == '__main__':
    main()
