_base_ = 'mmseg::_base_/default_runtime.py'
# mmaff's scope: its registries are children of mmseg's, so mmseg's
# components stay reachable by name and mmpretrain's as 'mmpretrain.X'.
default_scope = 'mmaff'
# Importing mmaff first applies the environment fixes (mmaff.utils.compat).
custom_imports = dict(imports=['mmaff'], allow_failed_imports=False)
# mmseg's visualizer, plus CAM heat maps for the CAM test run (stage 1):
# `tools/test.py CONFIG CKPT --show-dir DIR` (mmaff.visualization).
visualizer = dict(
    type='CAMLocalVisualizer',
    vis_backends=[dict(type='LocalVisBackend')],
    name='visualizer')
