# Copyright (c) mmaff contributors. All rights reserved.
"""Build mmaff (metadata in setup.cfg).

Like the OpenMMLab packages, a built mmaff carries its configs, model index
and tools in ``mmaff/.mim``, where ``mmaff::`` config bases
(:func:`mmaff.utils.compat.mim_root`) and OpenMMLab's ``mim`` look
for them. They are copied into the build folder, never into the source tree,
so a wheel (``pip wheel .``, ``pip install .``, or a build from the sdist,
which carries them through MANIFEST.in) has them and an editable install
uses the checkout's own ``configs/`` and ``tools/``.
"""
import os
import os.path as osp
import shutil
from typing import List

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = osp.dirname(osp.abspath(__file__))
# What mmaff/.mim holds, relative to the root of the checkout or sdist.
MIM_FILES = ('model-index.yml', )
MIM_DIRS = ('configs', 'tools')
_SKIP = shutil.ignore_patterns('__pycache__', '*.py[cod]', '*.egg-info',
                               '.ipynb_checkpoints')


class BuildPyWithMim(build_py):
    """``build_py`` that also copies the ``.mim`` files into the build."""

    def run(self) -> None:
        super().run()
        if getattr(self, 'editable_mode', False):
            return  # the checkout is the package root: nothing to copy
        target = osp.join(self.build_lib, 'mmaff', '.mim')
        if osp.isdir(target):
            shutil.rmtree(target)  # no stale files from an earlier build
        os.makedirs(target)
        for name in MIM_FILES:
            self.copy_file(osp.join(HERE, name), osp.join(target, name))
        for name in MIM_DIRS:
            src = osp.join(HERE, name)
            if not osp.isdir(src):
                raise FileNotFoundError(
                    f'{src} is missing: a build of mmaff needs configs/ and '
                    'tools/ (a sdist carries them through MANIFEST.in)')
            shutil.copytree(src, osp.join(target, name), ignore=_SKIP)

    def get_outputs(self, include_bytecode: bool = True) -> List[str]:
        outputs = super().get_outputs(include_bytecode)
        target = osp.join(self.build_lib, 'mmaff', '.mim')
        for dirpath, _, filenames in os.walk(target):
            outputs.extend(osp.join(dirpath, f) for f in filenames)
        return outputs


setup(cmdclass={'build_py': BuildPyWithMim})
