# Copyright (c) mmaff contributors. All rights reserved.
"""Helpers shared by the tests (importable because pytest puts
``tests/``, the folder of the root ``conftest.py``, on ``sys.path``)."""
import os
import os.path as osp
from types import SimpleNamespace


def run_hook(hook, samples, batch_size=2, before_epoch_end=None):
    """Drive the hook like mmengine's TestLoop does (batches of samples)."""
    batches = [
        samples[i:i + batch_size] for i in range(0, len(samples), batch_size)
    ]
    runner = SimpleNamespace(test_dataloader=batches)
    hook.before_test_epoch(runner)
    for idx, batch in enumerate(batches):
        hook.after_test_iter(runner, idx, None, batch)
    if before_epoch_end is not None:  # where the evaluator computes
        before_epoch_end()
    hook.after_test_epoch(runner, {})


def mtimes(folder):
    """File name -> modification time (ns) of a folder's files."""
    return {
        name: os.stat(osp.join(folder, name)).st_mtime_ns
        for name in os.listdir(folder)
    }


def folder_bytes(folder):
    """File name -> bytes of a folder's files."""
    out = {}
    for name in sorted(os.listdir(folder)):
        with open(osp.join(folder, name), 'rb') as f:
            out[name] = f.read()
    return out


#: The demo's stage configs, relative to the repository.
DEMO_CAM = 'configs/demo/affinitynet-cam_r18-d8_1xb16-3k_demo-112x112.py'
DEMO_AFF = 'configs/demo/affinitynet_r18-d8_1xb8-1k_demo-96x96.py'
DEMO_SEG = ('configs/demo/fcn_r18-d8_1xb8-1.5k_demo-112x112_'
            'affinitynet-pseudo.py')

#: The repository root.
REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))


def load_tool(relpath, name):
    """Import a tool script (e.g. ``tools/analysis_tools/x.py``) as module
    ``name``; for a module-scoped fixture: ``yield`` it, then pop ``name``
    from ``sys.modules``."""
    import importlib.util
    import sys
    spec = importlib.util.spec_from_file_location(name,
                                                  osp.join(REPO, relpath))
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def run_tool_process(args, cwd, env=None, timeout=600) -> str:
    """Run ``python ARGS`` (one CPU thread, warnings off) in ``cwd``; assert
    it succeeds and return its output (stdout + stderr)."""
    import subprocess
    import sys
    full_env = dict(os.environ, PYTHONWARNINGS='ignore', OMP_NUM_THREADS='1')
    full_env.update(env or {})
    proc = subprocess.run([sys.executable] + [str(a) for a in args],
                          cwd=cwd,
                          env=full_env,
                          capture_output=True,
                          text=True,
                          timeout=timeout)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-6000:]
    return out
