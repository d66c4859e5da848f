# Copyright (c) mmaff contributors. All rights reserved.
import importlib.util
import json
import os.path as osp

import pytest

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
spec = importlib.util.spec_from_file_location(
    'run_pipeline', osp.join(REPO, 'tools', 'run_pipeline.py'))
run_pipeline = importlib.util.module_from_spec(spec)
spec.loader.exec_module(run_pipeline)

STAGE = '''
import json, os, sys
name, count_file, fail_flag, out = sys.argv[1:5]
with open(count_file, 'a') as f:
    f.write(name + '\\n')
if os.path.exists(fail_flag):
    sys.exit('planned failure of ' + name)
json.dump({'score': len(name), 'extra': 1}, open(out, 'w'))
'''


def _setup(tmp_path):
    script = tmp_path / 'stage.py'
    script.write_text(STAGE)
    count = tmp_path / 'count.txt'
    flag = tmp_path / 'fail_b'
    work = tmp_path / 'work'
    stages = []
    for name in ('a', 'b', 'c'):
        stages.append(
            dict(
                name=name,
                script=str(script),
                args=[
                    name,
                    str(count),
                    str(flag) if name == 'b' else str(tmp_path / 'never'),
                    '{work_dir}/' + name + '.json'
                ],
                summary=dict(
                    key=name,
                    file='{work_dir}/' + name + '.json',
                    fields=['score'])))
    cfg = tmp_path / 'pipe.py'
    cfg.write_text(f'work_dir = {str(work)!r}\nstages = {stages!r}\n')
    return cfg, count, flag, work


def test_pipeline_skips_done_stages_and_resumes_after_failure(tmp_path):
    cfg, count, flag, work = _setup(tmp_path)
    flag.write_text('x')
    with pytest.raises(RuntimeError, match=r"stage 'b' failed"):
        run_pipeline.run_pipeline(str(cfg))
    assert count.read_text().split() == ['a', 'b']
    assert osp.isfile(work / '.done' / 'a')
    assert not osp.exists(work / '.done' / 'b')
    assert 'planned failure of b' in (work / 'logs' / 'b.log').read_text()

    flag.unlink()
    summary = run_pipeline.run_pipeline(str(cfg))
    # a is not run again; b resumes; c follows
    assert count.read_text().split() == ['a', 'b', 'b', 'c']
    assert summary == {'a': {'score': 1}, 'b': {'score': 1}, 'c': {'score': 1}}
    with open(work / 'summary.json') as f:
        assert json.load(f) == summary

    # a third run does nothing
    run_pipeline.run_pipeline(str(cfg))
    assert count.read_text().split() == ['a', 'b', 'b', 'c']


def test_pipeline_last_checkpoint_placeholder(tmp_path):
    (tmp_path / 'w').mkdir()
    with pytest.raises(FileNotFoundError, match='last_checkpoint'):
        run_pipeline._fmt(dict(last_checkpoint='{work_dir}/w'),
                          str(tmp_path))
    (tmp_path / 'w' / 'last_checkpoint').write_text('/x/iter_8.pth\n')
    assert run_pipeline._fmt([dict(last_checkpoint='{work_dir}/w'), 'a'],
                             str(tmp_path)) == ['/x/iter_8.pth', 'a']


def test_pipeline_rejects_duplicate_stage_names(tmp_path):
    cfg = tmp_path / 'dup.py'
    cfg.write_text(f"work_dir = {str(tmp_path / 'w')!r}\n"
                   "stages = [dict(name='a', script='x.py'), "
                   "dict(name='a', script='y.py')]\n")
    with pytest.raises(ValueError, match='unique'):
        run_pipeline.run_pipeline(str(cfg))


def test_distributed_stages_go_through_torchrun(tmp_path):
    stage = dict(
        name='t', script='tools/train.py', args=['cfg.py'], distributed=True,
        resume=True, resume_dir='{work_dir}/t')
    plain = dict(name='p', script='tools/x.py', args=['{work_dir}/a'])
    work = str(tmp_path)
    cmd = run_pipeline._stage_command(stage, work, 'pytorch', 4)
    assert cmd[1:3] == ['-m', 'torch.distributed.run']
    assert '--nproc_per_node=4' in cmd
    assert cmd[-3:] == ['cfg.py', '--launcher', 'pytorch']
    # no checkpoint yet: no --resume; with one: --resume
    (tmp_path / 't').mkdir()
    (tmp_path / 't' / 'iter_2.pth').write_bytes(b'')
    cmd = run_pipeline._stage_command(stage, work, 'none', 1)
    assert cmd[-2:] == ['cfg.py', '--resume']
    assert 'torch.distributed.run' not in cmd
    # non-distributed stages never get a launcher
    cmd = run_pipeline._stage_command(plain, work, 'pytorch', 4)
    assert cmd[-1] == f'{work}/a' and '--launcher' not in cmd


def test_placeholders_from_top_level_keys(tmp_path):
    names = dict(work_dir='w', cfg='c.py', n=3)
    assert run_pipeline._fmt(['{cfg}', '{work_dir}/x{n}', '{unknown}'],
                             names) == ['c.py', 'w/x3', '{unknown}']
    (tmp_path / 'last_checkpoint').write_text('/x/iter_2.pth\n')
    assert run_pipeline._fmt(f'k={{last_checkpoint:{tmp_path}}}',
                             names) == 'k=/x/iter_2.pth'
    # a dry run reads no checkpoint and shows a shell expression
    shown = run_pipeline.format_command(
        run_pipeline._fmt(['a', 'k={last_checkpoint:{work_dir}/m}'], names,
                          dry_run=True))
    assert shown == 'a "k=$(cat w/m/last_checkpoint)"'


def _stage_cfg(tmp_path, with_val):
    cfg = tmp_path / 'stage.py'
    cfg.write_text(
        'train_cfg = dict(type="IterBasedTrainLoop", max_iters=100)\n'
        'train_dataloader = dict(batch_size=8, dataset=dict(type="X"))\n'
        f'val_dataloader = {"dict(dataset=dict(type=1))" if with_val else None}\n'
        'test_dataloader = dict(dataset=dict(type="Y"))\n')
    return str(cfg)


def test_smoke_and_cfg_options_of_train_and_test_stages(tmp_path):
    cfg = _stage_cfg(tmp_path, with_val=False)
    train = dict(name='t', script='tools/train.py', args=[cfg])
    test = dict(name='e', script='tools/test.py', args=[cfg, 'ck.pth'])
    other = dict(
        name='o', script='tools/x.py', args=['a'], smoke_args=['n={n}'])
    smoke = dict(iters=2, images=4)
    opts = {'train_dataloader.batch_size': 2, 'val_dataloader.num_workers': 0}
    cmd = run_pipeline._stage_command(train, dict(work_dir='w', n=4), 'none',
                                      1, smoke, opts, amp=True)
    at = cmd.index('--cfg-options')
    # no val_dataloader in this config: its option is not passed
    assert cmd[at + 1:] == [
        'train_cfg.max_iters=2', 'train_dataloader.dataset.indices=4',
        'test_dataloader.dataset.indices=4', 'train_dataloader.batch_size=2',
        '--amp'
    ]
    cmd = run_pipeline._stage_command(test, 'w', 'none', 1, smoke, opts)
    assert cmd[-3:] == [
        '--cfg-options', 'test_dataloader.dataset.indices=4',
        'train_dataloader.batch_size=2'
    ]
    cfg_val = _stage_cfg(tmp_path, with_val=True)
    cmd = run_pipeline._stage_command(
        dict(train, args=[cfg_val, '--cfg-options', 'a=1']), 'w', 'none', 1,
        None, opts)
    # options join the stage's own --cfg-options
    assert cmd[-4:] == [
        '--cfg-options', 'train_dataloader.batch_size=2',
        'val_dataloader.num_workers=0', 'a=1'
    ]
    # other tools: only their smoke_args (as --cfg-options), only in smoke
    # runs
    assert run_pipeline._stage_command(other, dict(work_dir='w', n=4),
                                       'none', 1, smoke, opts)[-3:] == [
                                           'a', '--cfg-options', 'n=4'
                                       ]
    assert run_pipeline._stage_command(other, 'w', 'none', 1, None,
                                       opts)[-1] == 'a'


def test_smoke_run_uses_its_own_work_dir_and_dry_run_runs_nothing(
        tmp_path, capsys):
    cfg, count, flag, work = _setup(tmp_path)
    assert run_pipeline.run_pipeline(str(cfg), dry_run=True) == {}
    assert not count.exists() and not work.exists()
    out = capsys.readouterr().out
    assert out.count('# ') == 3 and 'stage.py a ' in out
    summary = run_pipeline.run_pipeline(str(cfg), smoke=True)
    assert summary == {'a': {'score': 1}, 'b': {'score': 1}, 'c': {'score': 1}}
    assert osp.isfile(f'{work}_smoke/summary.json') and not work.exists()


def test_measured_values_and_nested_names(tmp_path):
    names = dict(work_dir='w', seg='{work_dir}/seg')
    assert run_pipeline._fmt('{seg}/x', names) == 'w/seg/x'
    metrics = tmp_path / 'm.json'
    metrics.write_text(json.dumps(dict(bg_threshold=0.35)))
    assert run_pipeline._fmt(f't={{metric:{metrics}:bg_threshold}}',
                             names) == 't=0.35'
    with pytest.raises(KeyError, match='mIoU'):
        run_pipeline._fmt(f'{{metric:{metrics}:mIoU}}', names)
    with pytest.raises(FileNotFoundError, match='bg_threshold'):
        run_pipeline._fmt(f'{{metric:{tmp_path}/no.json:bg_threshold}}',
                          names)
    shown = run_pipeline.format_command(
        run_pipeline._fmt(['t={metric:{work_dir}/m.json:bg_threshold}'],
                          names, dry_run=True))
    assert shown == '"t=<bg_threshold of w/m.json>"'


def test_stages_get_the_pipeline_work_dir_as_handover_root(tmp_path):
    """Hand-over names resolve under the pipeline's work dir, and every
    stage whose config defines hand-overs is told that root."""
    stage_cfg = tmp_path / 'stage.py'
    stage_cfg.write_text("handover_root = 'elsewhere'\n"
                         "handovers = dict(cams='{handover_root}/cams')\n")
    plain_cfg = tmp_path / 'plain.py'
    plain_cfg.write_text('x = 1\n')
    pipe = tmp_path / 'pipe.py'
    stages = [
        dict(name='t', script='tools/test.py',
             args=[str(stage_cfg), '{handovers.cams}']),
        dict(name='c', script='tools/make_confident_regions.py',
             args=['--config', str(stage_cfg)]),
        dict(name='p', script='tools/test.py', args=[str(plain_cfg)]),
    ]
    pipe.write_text(f"work_dir = '{tmp_path}/w'\n"
                    "handover_root = 'x'\n"
                    "handovers = dict(cams='{handover_root}/cams')\n"
                    f'stages = {stages!r}\n')
    import contextlib
    import io
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        run_pipeline.run_pipeline(str(pipe), dry_run=True)
    lines = [line for line in out.getvalue().splitlines()
             if not line.startswith('#')]
    root = f'handover_root={tmp_path}/w'
    assert lines[0].endswith(f'{tmp_path}/w/cams --cfg-options {root}')
    assert lines[1].endswith(f'--config {stage_cfg} --cfg-options {root}')
    assert 'handover_root' not in lines[2]
