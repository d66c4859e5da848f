# Copyright (c) mmaff contributors. All rights reserved.
from .set_env import register_all_modules

__all__ = ['register_all_modules']
