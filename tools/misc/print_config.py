# Copyright (c) mmaff contributors. All rights reserved.
"""Print the whole config (after inheritance and --cfg-options)."""
import argparse

from mmengine.config import DictAction

import mmaff  # noqa: F401
from mmaff.utils.tool_utils import load_tool_config


def main():
    parser = argparse.ArgumentParser(description='Print the whole config')
    parser.add_argument('config', help='config file path')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override settings of the config, key=value pairs')
    args = parser.parse_args()
    cfg = load_tool_config(args.config, args.cfg_options)
    print(f'Config:\n{cfg.pretty_text}')


if __name__ == '__main__':
    main()
