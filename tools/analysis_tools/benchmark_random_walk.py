# Copyright (c) mmaff contributors. All rights reserved.
"""Benchmark the sparse random walk against the authors' dense formulation.

Both run on the same synthetic but realistic inputs (a few elliptic objects
with per-class affinity features and CAM-like scores, background score
``(1 - max CAM) ** 16``):

* sparse: :func:`mmaff.ops.random_walk`, ``T^t v`` for ``t = 2 ** logt``
  (as a Chebyshev series of ``T``: 84 sparse products for ``t = 256``);
* dense: the authors' formulation, a dense ``N x N`` transition matrix
  squared ``logt`` times, then ``T^t v`` (fp32, like the authors).

Each method runs in its own subprocess so that its peak memory can be
measured in isolation. On CPU, peak memory is the increase of the process's
peak resident set size (``VmHWM``, reset through ``/proc/self/clear_refs``
after the inputs exist) over its resident size before the first call, i.e.
what the method itself allocates. On CUDA it is
``torch.cuda.max_memory_allocated()`` over the memory allocated before.
Times are the median over ``--repeat`` calls (including building ``T``).

With ``--busy`` (the default) every case also runs while a competing
process keeps all cores busy (torch matrix products on its default threads,
started and stopped by the benchmark, at most ``--busy-limit`` seconds):
the "loaded" rows, measured in the same run as the quiet ones.

Example::

    python tools/analysis_tools/benchmark_random_walk.py
    python tools/analysis_tools/benchmark_random_walk.py --device cuda \\
        --dense-large --out walk.json
"""
import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time

# name -> (grid h, grid w, description); grid = ceil(image / 8)
CASES = {
    'voc': (47, 63, '500x375 image (VOC), grid 47x63'),
    '2048x1024': (128, 256, '2048x1024 image, grid 128x256'),
}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Sparse random walk vs the dense formulation')
    parser.add_argument('--device', default='cpu', help='cpu or cuda')
    parser.add_argument(
        '--cases',
        nargs='+',
        default=list(CASES),
        choices=list(CASES),
        help='which sizes to run')
    parser.add_argument(
        '--dense-large',
        action='store_true',
        help='also run the dense formulation at 2048x1024 (4 GiB per '
        'matrix, 2 alive while squaring; about an hour on 2 CPU cores)')
    parser.add_argument('--channels', type=int, default=21)
    parser.add_argument('--feat-channels', type=int, default=64)
    parser.add_argument('--beta', type=float, default=8)
    parser.add_argument('--logt', type=int, default=8)
    parser.add_argument('--radius', type=int, default=5)
    parser.add_argument('--repeat', type=int, default=3)
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument(
        '--no-busy',
        dest='busy',
        action='store_false',
        help='skip the runs beside a busy competing process')
    parser.add_argument(
        '--busy-limit',
        type=float,
        default=600,
        help='seconds the competing process may run at most')
    parser.add_argument('--out', help='also write the rows as JSON')
    # internal: run one method in this process and report as JSON
    parser.add_argument('--worker', choices=['sparse', 'dense'])
    parser.add_argument('--height', type=int)
    parser.add_argument('--width', type=int)
    parser.add_argument('--worker-out')
    return parser.parse_args(argv)


#: The competing process: torch matrix products on all cores, bounded.
BUSY = ('import sys, time, torch\n'
        'a = torch.randn(384, 384)\n'
        'end = time.time() + float(sys.argv[1])\n'
        'while time.time() < end:\n'
        '    a = torch.tanh(a @ a)\n')


def start_busy(limit):
    """Start the competing process (stopped by :func:`stop_busy`)."""
    proc = subprocess.Popen([sys.executable, '-c', BUSY, str(limit)])
    time.sleep(2)  # let it reach its loop
    return proc


def stop_busy(proc):
    proc.kill()
    proc.wait()


def make_inputs(h, w, channels, feat_channels, radius, seed, device):
    """Synthetic scene: 3 objects, affinity features and CAM-like scores."""
    import torch

    from mmaff.ops import affinity_from_features
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(
        torch.arange(h, dtype=torch.float32),
        torch.arange(w, dtype=torch.float32),
        indexing='ij')
    label = torch.zeros(h, w, dtype=torch.long)
    cams = torch.zeros(channels, h, w)
    classes = torch.randperm(channels - 1, generator=g)[:3] + 1
    for c in classes.tolist():
        cy, cx, ry, rx, peak = torch.rand(5, generator=g).tolist()
        d = ((yy - cy * h) / ((0.15 + 0.25 * ry) * h))**2 + \
            ((xx - cx * w) / ((0.15 + 0.25 * rx) * w))**2
        label[d < 1] = c
        # a CAM peaks inside its object and under-covers it
        cams[c] = torch.maximum(cams[c],
                                (0.6 + 0.4 * peak) * torch.exp(-2 * d))
    cams = cams * (1 + 0.2 * torch.rand(cams.shape, generator=g))
    cams = cams / (cams.flatten(1).amax(1)[:, None, None] + 1e-5)
    scores = cams.clone()
    scores[0] = (1 - cams[1:].amax(0)).clamp(0, 1)**16
    embed = torch.randn(channels, feat_channels, generator=g)
    feats = embed[label].permute(2, 0, 1) + 0.1 * torch.randn(
        feat_channels, h, w, generator=g)
    affinity = affinity_from_features(feats[None], radius)
    return scores[None].to(device), affinity.to(device)


def dense_walk(scores, affinity, beta, logt, radius):
    """The authors' formulation: dense T, ``logt`` squarings, ``T^t v``."""
    import torch

    from mmaff.ops import pair_offsets, pair_slices
    _, c, h, w = scores.shape
    n = h * w
    index = torch.arange(n, device=scores.device).view(h, w)
    trans = torch.eye(n, device=scores.device)
    for p, offset in enumerate(pair_offsets(radius)):
        sl = pair_slices(offset, h, w)
        if sl is None:
            continue
        src, dst = sl
        i, j = index[src].reshape(-1), index[dst].reshape(-1)
        a = affinity[0, p][src].reshape(-1).pow(beta)
        trans[i, j] = a
        trans[j, i] = a
    trans /= trans.sum(1, keepdim=True)
    for _ in range(logt):
        trans = trans @ trans
    v = scores[0].reshape(c, n).t()
    return (trans @ v).t().reshape(1, c, h, w)


def _status_kib(key):
    with open('/proc/self/status') as f:
        for line in f:
            if line.startswith(key + ':'):
                return int(line.split()[1])
    raise KeyError(key)


def worker(args):
    import torch

    import mmaff  # noqa: F401
    from mmaff.ops import random_walk
    device = torch.device(args.device)
    scores, affinity = make_inputs(args.height, args.width, args.channels,
                                   args.feat_channels, args.radius, args.seed,
                                   device)
    if args.worker == 'sparse':

        def call():
            return random_walk(scores, affinity, args.beta, 2**args.logt,
                               args.radius)
    else:

        def call():
            return dense_walk(scores, affinity, args.beta, args.logt,
                              args.radius)

    cuda = device.type == 'cuda'
    if cuda:
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        mem_method = 'torch.cuda.max_memory_allocated increase'
    else:
        try:
            with open('/proc/self/clear_refs', 'w') as f:
                f.write('5')  # reset VmHWM to the current RSS
            before = _status_kib('VmRSS') * 1024
            mem_method = 'peak RSS (VmHWM) increase'
        except OSError:
            before = 0
            mem_method = 'peak RSS of the whole process (ru_maxrss)'
    times = []
    with torch.no_grad():
        for _ in range(max(1, args.repeat)):
            start = time.perf_counter()
            out = call()
            if cuda:
                torch.cuda.synchronize(device)
            times.append(time.perf_counter() - start)
    if cuda:
        peak = torch.cuda.max_memory_allocated(device) - before
    elif before:
        peak = _status_kib('VmHWM') * 1024 - before
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    torch.save(out.cpu(), args.worker_out)
    from mmaff.ops.random_walk import walk_threads
    # the walk's own rule (short CPU walks on one thread); dense: torch's
    threads = walk_threads(scores, args.radius) \
        if args.worker == 'sparse' else torch.get_num_threads()
    print(
        json.dumps(
            dict(
                times=times,
                peak_bytes=peak,
                mem_method=mem_method,
                threads=threads)))


def run_worker(method, h, w, args, tmpdir):
    out = os.path.join(tmpdir, f'{method}_{h}x{w}.pt')
    cmd = [
        sys.executable,
        os.path.abspath(__file__), '--worker', method, '--height',
        str(h), '--width',
        str(w), '--worker-out', out, '--device', args.device, '--channels',
        str(args.channels), '--feat-channels',
        str(args.feat_channels), '--beta',
        str(args.beta), '--logt',
        str(args.logt), '--radius',
        str(args.radius), '--repeat',
        str(args.repeat), '--seed',
        str(args.seed)
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f'{method} worker failed:\n{proc.stderr}')
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    result['out'] = out
    return result


def measure(case, h, w, desc, n, load, args, tmpdir):
    """One case under one load: the sparse walk (and the dense one)."""
    import torch
    sparse = run_worker('sparse', h, w, args, tmpdir)
    row = dict(
        case=desc,
        load=load,
        n=n,
        sparse_s=statistics.median(sparse['times']),
        sparse_mem=sparse['peak_bytes'],
        threads=sparse['threads'],
        mem_method=sparse['mem_method'],
        dense_matrix=4 * n * n)
    if case == 'voc' or args.dense_large:
        dense = run_worker('dense', h, w, args, tmpdir)
        row['dense_s'] = statistics.median(dense['times'])
        row['dense_mem'] = dense['peak_bytes']
        a = torch.load(sparse['out']).double()
        b = torch.load(dense['out']).double()
        row['rel_diff'] = ((a - b).abs().max() / b.abs().max()).item()
        row['agree'] = (a.argmax(1) == b.argmax(1)).double().mean().item()
    return row


def mib(num_bytes):
    return f'{num_bytes / 2**20:.1f} MiB'


def machine(device):
    import torch
    if device.startswith('cuda'):
        return torch.cuda.get_device_name(torch.device(device))
    name = platform.processor() or platform.machine()
    try:
        with open('/proc/cpuinfo') as f:
            for line in f:
                if line.startswith('model name'):
                    name = line.split(':', 1)[1].strip()
                    break
    except OSError:
        pass
    return f'{name}, {os.cpu_count()} logical CPUs'


def main(argv=None):
    args = parse_args(argv)
    if args.worker:
        return worker(args)
    import torch
    print(f'torch {torch.__version__}, device {args.device}: '
          f'{machine(args.device)}; OMP_NUM_THREADS='
          f'{os.environ.get("OMP_NUM_THREADS", "unset")}')
    print(f'C={args.channels}, beta={args.beta}, t=2^{args.logt}, '
          f'radius={args.radius}, median of {args.repeat} calls')
    print('load average (1, 5, 15 min) before: '
          f'{", ".join(f"{x:.2f}" for x in os.getloadavg())}')
    rows = []
    loads = ['quiet', 'busy'] if args.busy else ['quiet']
    with tempfile.TemporaryDirectory() as tmpdir:
        for case in args.cases:
            h, w, desc = CASES[case]
            n = h * w
            for load in loads:
                busy = start_busy(args.busy_limit) if load == 'busy' \
                    else None
                try:
                    row = measure(case, h, w, desc, n, load, args, tmpdir)
                finally:
                    if busy is not None:
                        stop_busy(busy)
                rows.append(row)
                print(json.dumps(row))
    if args.out:
        with open(args.out, 'w') as f:
            json.dump(rows, f, indent=2)
    print('\n| case | load | N | sparse time | dense time | speed-up | '
          'sparse peak mem | dense peak mem | max rel diff | argmax '
          'agreement |')
    print('| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |')
    for r in rows:
        if 'dense_s' in r:
            dense = (f"{r['dense_s']:.3f} s",
                     f"{r['dense_s'] / r['sparse_s']:.0f}x",
                     mib(r['dense_mem']), f"{r['rel_diff']:.2e}",
                     f"{100 * r['agree']:.3f} %")
        else:
            dense = ('skipped', '-', f"not run: {mib(r['dense_matrix'])} "
                     'per matrix, 2 alive while squaring', '-', '-')
        print(f"| {r['case']} | {r['load']} | {r['n']} | "
              f"{r['sparse_s']:.3f} s | "
              f'{dense[0]} | {dense[1]} | {mib(r["sparse_mem"])} | '
              f'{dense[2]} | {dense[3]} | {dense[4]} |')
    print(f"\nmemory: {rows[0]['mem_method']}; threads of the sparse walk "
          f"per case: {[r['threads'] for r in rows]}; load average after: "
          f'{", ".join(f"{x:.2f}" for x in os.getloadavg())}')


if __name__ == '__main__':
    main()
