"""Mutation check of our own: apply deliberate bugs one at a time to a scratch copy and see which tests catch them.

Usage (from the repository root; not collected by pytest)::

    .venv/bin/python test/mutants.py                 # every mutant
    .venv/bin/python test/mutants.py --only best-never-written --only tta-overwrite
    .venv/bin/python test/mutants.py --skip-slow     # leave out the mutants whose tests take minutes (DDP)
    .venv/bin/python test/mutants.py --list

The tracked and untracked (not ignored) files are copied to a scratch folder under /tmp (``.venv`` is linked),
each mutant replaces one exact snippet of one file there (the snippet must occur the stated number of times, so a
mutant that no longer applies is reported as ``stale`` rather than silently passing), and the tests listed for it
run with ``pytest -x``. A mutant is *killed* when a test fails, *survives* when they all pass. The unmutated tests
run first (``--no-baseline`` skips that): a failing baseline makes every kill meaningless, so it stops the run.
Exit status: 0 when every mutant was killed, 1 otherwise.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
import os
from pathlib import Path
import re
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = Path(__file__).resolve().parents[1]
TB = 'test/test_training_behaviour.py::'
TP = 'test/test_player.py::'


@dataclass(frozen=True)
class Mutant:
    """One deliberate bug: replace ``old`` (occurring ``count`` times) by ``new`` in ``path``."""

    name: str
    path: str
    old: str
    new: str
    tests: tuple[str, ...]
    count: int = 1
    slow: bool = False


MUTANTS = [
    # --- the eight bugs of issue 10
    Mutant('loss-no-distillation', 'pu_ros/networks/losses.py',
           'total = total + self.cfg.lambda_seg2d * seg2d + self.cfg.lambda_xm * xm',
           'total = total + self.cfg.lambda_seg2d * seg2d',
           (TB + 'test_loss_is_the_documented_sum_with_its_lambdas',)),
    Mutant('tta-overwrite', 'pu_ros/training/eval_segmentation.py',
           'probs[mask] += p', 'probs[mask] = p',
           (TB + 'test_tta_is_the_mean_of_the_votes_of_the_variants_that_see_the_point',)),
    Mutant('save-labels-learning-ids', 'pu_ros/training/eval_segmentation.py',
           "label_map.to_raw(full).astype('<u4')", "full.astype('<u4')",
           (TB + 'test_eval_saves_raw_ids_and_full_scan_metrics_count_the_range',)),
    Mutant('resume-no-weights', 'pu_ros/training/train_segmentation.py',
           "model.load_state_dict(ckpt_io.state_dict_to_float32(resumed['state_dict']))", 'pass',
           (TB + 'test_resume_mid_epoch_matches_an_uninterrupted_run',)),
    Mutant('best-never-written', 'pu_ros/training/train_segmentation.py',
           "save(out / 'best.pt'", "(lambda *a: None)(out / 'best.pt'",
           (TB + 'test_best_checkpoint_is_the_best_validated_step',), count=2),
    Mutant('dataset-labels-misaligned', 'pu_ros/data/semantic_dataset.py',
           'labels=labels[keep],', 'labels=labels[np.flatnonzero(inside)],',
           (TB + 'test_points_labels_and_pixels_stay_aligned_through_every_transform',)),
    Mutant('player-qos-sensor-ignored', 'pu_ros/ros/player_cli.py',
           "'qos': args.qos,", "'qos': 'reliable',",
           (TP + 'test_sensor_qos_publisher_reaches_best_effort_subscriber',)),
    Mutant('player-rate-capped', 'pu_ros/ros/player_cli.py',
           "'rate': float(args.rate),", "'rate': min(float(args.rate), 1.0),",
           (TP + 'test_fast_rates_are_not_capped',)),
    # --- our own list
    Mutant('loss-seg2d-lambda-dropped', 'pu_ros/networks/losses.py',
           'self.cfg.lambda_seg2d * seg2d', 'seg2d',
           (TB + 'test_loss_is_the_documented_sum_with_its_lambdas',)),
    Mutant('tta-votes-not-counted', 'pu_ros/training/eval_segmentation.py',
           'votes[mask] += 1.0', 'votes[mask] = 1.0',
           (TB + 'test_tta_is_the_mean_of_the_votes_of_the_variants_that_see_the_point',)),
    Mutant('eval-full-scan-ignores-out-of-range', 'pu_ros/training/eval_segmentation.py',
           'cm_full.update(np.full(lab.shape, ign, np.int64), lab)', 'pass',
           (TB + 'test_eval_saves_raw_ids_and_full_scan_metrics_count_the_range',)),
    Mutant('dataset-pixels-misaligned', 'pu_ros/data/semantic_dataset.py',
           '            pix_uv = uv\n', '            pix_uv = uv[::-1]\n',
           (TB + 'test_points_labels_and_pixels_stay_aligned_through_every_transform',)),
    Mutant('accum-loss-not-divided', 'pu_ros/training/train_segmentation.py',
           "scaler.scale(losses['total'] / accum)", "scaler.scale(losses['total'])",
           (TB + 'test_one_step_equals_a_hand_made_sgd_step',)),
    Mutant('accum-ignored', 'pu_ros/training/train_segmentation.py',
           'sync = micro % accum == 0', 'sync = True',
           (TB + 'test_one_step_equals_a_hand_made_sgd_step',)),
    Mutant('clip-ignored', 'pu_ros/training/train_segmentation.py',
           "torch.nn.utils.clip_grad_norm_(model.parameters(), float(t['clip_grad_norm']))", 'pass',
           (TB + 'test_one_step_equals_a_hand_made_sgd_step',)),
    Mutant('resume-restarts-epoch', 'pu_ros/training/train_segmentation.py',
           'return list(sampler)[skip_batches * batch:]', 'return list(sampler)',
           (TB + 'test_resume_mid_epoch_matches_an_uninterrupted_run',)),
    Mutant('resume-no-optimizer-state', 'pu_ros/training/train_segmentation.py',
           "optimizer.load_state_dict(resumed['optimizer'])", 'pass',
           (TB + 'test_resume_mid_epoch_matches_an_uninterrupted_run',)),
    Mutant('best-final-validation-not-saved', 'pu_ros/training/train_segmentation.py',
           "        if metrics['val_miou'] > best_miou:  # the final validation competes like the periodic ones\n"
           "            best_miou = metrics['val_miou']\n"
           "            save(out / 'best.pt', step, epoch, batches_done, {**last_losses, **metrics})\n",
           "        if metrics['val_miou'] > best_miou:\n            best_miou = metrics['val_miou']\n",
           (TB + 'test_best_checkpoint_with_final_validation_only_and_bn_recalibration',)),
    Mutant('bn-recalibration-ema', 'pu_ros/training/train_segmentation.py',
           'm.momentum = None  # cumulative', 'm.momentum = 0.1  # cumulative',
           (TB + 'test_bn_recalibration_is_the_plain_mean_of_batch_statistics',)),
    Mutant('bn-recalibration-resets-unused-norms', 'pu_ros/training/train_segmentation.py',
           'norms[i].load_state_dict(saved[i])', 'pass',
           (TB + 'test_bn_recalibration_is_the_plain_mean_of_batch_statistics',)),
    Mutant('segmenter-nan-intensity-kept', 'pu_ros/inference/segmenter.py',
           ' & np.isfinite(pts[:, 3])', '',
           ('test/test_segmenter.py::test_non_finite_intensity_is_left_out_like_out_of_range',)),
    Mutant('ddp-eval-not-reduced', 'pu_ros/training/eval_segmentation.py',
           'if world > 1:', 'if False:',
           ('test/test_ddp.py::test_two_gloo_processes_match_single_process',), slow=True),
    Mutant('ddp-no-gradient-sync', 'pu_ros/training/train_segmentation.py',
           '    net = model\n    if info.distributed:', '    net = model\n    if False:',
           ('test/test_ddp.py::test_two_gloo_processes_match_single_process',), slow=True),
    Mutant('player-sigint-success', 'pu_ros/ros/player_cli.py',
           'return 0 if player.loop else 130', 'return 0',
           (TP + 'test_interrupt_without_loop_exits_130',)),
    Mutant('player-wait-never-times-out', 'pu_ros/ros/player_playback.py',
           'if now >= self._wait_deadline:', 'if False:',
           (TP + 'test_wait_for_subscribers_times_out_and_plays_anyway',)),
    Mutant('player-linger-ignored', 'pu_ros/ros/player_playback.py',
           'if error is None and self.linger > 0:', 'if False:',
           (TP + 'test_linger_waits_for_a_reliable_subscriber_that_does_not_acknowledge',)),
    Mutant('player-clock-not-reset-on-loop', 'pu_ros/ros/player_playback.py',
           '            self._last_clock_ns = None\n            self._clock_timer.reset()',
           '            self._clock_timer.reset()',
           (TP + 'test_loop_replays_until_interrupted_and_clock_jumps_back',)),
    Mutant('bag-damaged-record-unwrapped', 'pu_ros/data/bag.py',
           "raise BagError(f'cannot read bag {path}: {type(exc).__name__}: {exc}') from None", 'raise',
           (TP + 'test_bag_error_mid_playback_fails_cleanly',)),
    Mutant('echo-main-count-not-reached-is-success', 'pu_ros/ros/echo_node.py',
           '        return 1  # stopped before `count` messages arrived', '        return code',
           ('test/test_echo_node.py::test_main_exit_code_says_whether_count_was_reached',)),
]


def scratch_copy(dest: Path) -> None:
    """Copy the files git knows (tracked + untracked, not ignored) to ``dest``; link the virtualenv."""
    files = subprocess.run(['git', 'ls-files', '--cached', '--others', '--exclude-standard', '-z'], cwd=ROOT,
                           capture_output=True, check=True).stdout.decode().split('\0')
    for rel in filter(None, files):
        src = ROOT / rel
        if src.is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)
    venv = ROOT / '.venv'
    if venv.exists():
        (dest / '.venv').symlink_to(venv.resolve())


def run_tests(tree: Path, tests, timeout: float) -> tuple[str, float, str]:
    """(outcome 'pass' / 'fail' / 'error' / 'timeout', seconds, first failing test or error line)."""
    env = {**os.environ, 'PYTHONPATH': str(tree), 'OMP_NUM_THREADS': '1'}
    cmd = [sys.executable, '-m', 'pytest', '-x', '-q', '-rf', '-p', 'no:cacheprovider', *tests]
    t0 = time.monotonic()
    try:
        res = subprocess.run(cmd, cwd=tree, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return 'timeout', time.monotonic() - t0, ''
    dt = time.monotonic() - t0
    out = res.stdout + res.stderr
    if res.returncode == 0:
        return 'pass', dt, ''
    failed = re.findall(r'^FAILED (\S+)', out, flags=re.M)
    if res.returncode == 1 and failed:
        return 'fail', dt, failed[0]
    return 'error', dt, out.strip().splitlines()[-1] if out.strip() else f'exit {res.returncode}'


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--only', action='append', default=[], metavar='NAME', help='run only these mutants')
    parser.add_argument('--skip-slow', action='store_true', help='leave out mutants whose tests take minutes')
    parser.add_argument('--no-baseline', action='store_true', help='do not run the unmutated tests first')
    parser.add_argument('--list', action='store_true', help='list the mutants and exit')
    parser.add_argument('--timeout', type=float, default=600.0, help='seconds per test run (default 600)')
    args = parser.parse_args(argv)
    chosen = [m for m in MUTANTS if (not args.only or m.name in args.only) and not (args.skip_slow and m.slow)]
    unknown = set(args.only) - {m.name for m in MUTANTS}
    if unknown:
        parser.error(f'unknown mutant(s): {", ".join(sorted(unknown))}')
    if args.list:
        for m in chosen:
            print(f'{m.name:40s} {m.path}  ->  {", ".join(t.split("::")[-1] for t in m.tests)}')
        return 0

    with tempfile.TemporaryDirectory(prefix='pu_ros_mutants_') as tmp:
        tree = Path(tmp)
        scratch_copy(tree)
        if not args.no_baseline:
            tests = sorted({t for m in chosen for t in m.tests})
            outcome, dt, detail = run_tests(tree, tests, args.timeout * 2)
            print(f'baseline ({len(tests)} tests): {outcome} in {dt:.0f} s {detail}', flush=True)
            if outcome != 'pass':
                print('the unmutated tests do not pass: fix them first', file=sys.stderr)
                return 2
        results = []
        for m in chosen:
            target = tree / m.path
            original = target.read_text()
            found = original.count(m.old)
            if found != m.count:
                results.append((m, 'stale', 0.0, f'snippet found {found}x, expected {m.count}x'))
            else:
                target.write_text(original.replace(m.old, m.new))
                try:
                    outcome, dt, detail = run_tests(tree, m.tests, args.timeout)
                finally:
                    target.write_text(original)
                verdict = {'fail': 'killed', 'pass': 'SURVIVED'}.get(outcome, outcome)
                results.append((m, verdict, dt, detail))
            m_, verdict, dt, detail = results[-1]
            print(f'{verdict:9s} {m.name:40s} {dt:6.0f} s  {detail}', flush=True)
    survivors = [m.name for m, v, _, _ in results if v != 'killed']
    print(f'\n{len(results) - len(survivors)}/{len(results)} mutants killed'
          + (f'; not killed: {", ".join(survivors)}' if survivors else ''))
    return 0 if not survivors else 1


if __name__ == '__main__':
    sys.exit(main())
