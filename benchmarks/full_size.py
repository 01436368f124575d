r"""Tiny ImageNet's full size on the CPU: generation, preparation, input, memory, one epoch.

Generates a sample with Tiny ImageNet's exact counts (200 classes x 500 train, 10,000
validation, 10,000 test, 64 px JPEGs) with the project's generator, then measures:

  generation   seconds to write the 120,000 JPEGs (recorded next to the sample; with
               --reuse_data an existing sample and its recorded time are reused)
  prepare      TFDS preparation into TFRecords, img/s (always into a fresh data dir)
  cached       train input img/s with cache=True: the first (decoding) epoch and cached ones
  streaming    train input img/s with cache=False at 100,000 and at 20,000 train images,
               with the peak RSS of each (memory must not grow with the dataset)
  train        a narrow VGG-11 with cache=True: the loop's own overhead (the step time in
               `train_epoch` against the jitted step alone on the same batches, already on
               the device, and the host's own work around an idle step, alternating; see
               epoch_overhead.py), then one epoch end to end, the evaluation, and the
               training process's peak RSS ('overhead' runs the first part alone)

Input epochs put each batch through the jitted augmentation (a random flip and 4-px-pad
crop per image) and block on it. Each measurement runs in a process of its own, so each
peak RSS (`ru_maxrss`) is that of one job. Targets: prepare >= 5,000 img/s; cached input
>= 20,000 img/s; streamed input >= 5,000 img/s with RSS at 20k and 100k within 200 MiB;
peak RSS <= 3 GiB with cache=True; loop overhead <= 10% of the step time.

  python -m benchmarks.full_size --data_dir /tmp/vgg_flax_full --reuse_data \
      --json benchmarks/results/full_size.json

`--reuse_prepared` keeps the prepared TFRecords (and the preparation figures of the
earlier --json); `--jobs streaming` reruns one measurement and keeps the others.
`--baseline DIR` times preparation alternately with another checkout's code (e.g.
`git worktree add DIR REV`) and checks that both prepare the same examples:

  python -m benchmarks.full_size --data_dir /tmp/vgg_flax_full --reuse_data \
      --prepare_samples full --baseline /tmp/before --prepare_repeats 2 --jobs none
"""

import functools
import itertools
import json
import os
import pathlib
import resource
import shutil
from statistics import median
import subprocess
import sys
import time

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '1')
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

from absl import flags
import jax  # pylint: disable=g-import-not-at-top
import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
import tensorflow as tf  # pylint: disable=g-import-not-at-top

from benchmarks import bench_config
from configs import default  # pylint: disable=g-import-not-at-top
from input_pipeline import pipeline  # pylint: disable=g-import-not-at-top
from vgg_flax.core.preprocess import preprocess

# Tiny ImageNet's counts, and a fifth of its train split for the streaming memory check.
FULL = dict(num_classes=200, train_per_class=500, val_per_class=50, test_images=10_000)
FIFTH = dict(num_classes=40, train_per_class=500, val_per_class=5, test_images=10)
TARGETS = {'prepare_img_s': 5_000, 'cached_img_s': 20_000, 'streaming_img_s': 5_000,
           'streaming_rss_growth_mib': 200, 'cached_train_rss_gib': 3.0,
           'loop_overhead': 0.10}


def parse_args(argv=None) -> flags.FlagValues:
  values = flags.FlagValues()
  flags.DEFINE_string('data_dir', '/tmp/vgg_flax_full', '', flag_values=values)
  flags.DEFINE_bool(
      'reuse_data', False, 'Reuse generated samples (and their recorded generation time).',
      flag_values=values)
  flags.DEFINE_bool(
      'reuse_prepared', False, 'Skip the preparation measurement when the TFRecords exist.',
      flag_values=values)
  flags.DEFINE_string(
      'baseline', '',
      'Another checkout of the project (e.g. `git worktree add DIR REV`): preparation is timed '
      'alternately with its code and this code.', flag_values=values)
  flags.DEFINE_integer('prepare_repeats', 1, '', flag_values=values)
  flags.DEFINE_string(
      'prepare_samples', 'full,fifth',
      'Samples to prepare (and time); the jobs need theirs prepared.', flag_values=values)
  flags.DEFINE_integer('batch_size', 64, '', flag_values=values)
  flags.DEFINE_integer('cached_epochs', 2, '', flag_values=values)
  flags.DEFINE_integer('width', 16, 'Narrow VGG-11 for the epoch.', flag_values=values)
  flags.DEFINE_integer('hidden_units', 256, '', flag_values=values)
  flags.DEFINE_integer(
      'overhead_steps', 100, 'Steps in each timing of the loop against the step alone.',
      flag_values=values)
  flags.DEFINE_integer('overhead_repeats', 3, '', flag_values=values)
  flags.DEFINE_string(
      'jobs', 'cached,streaming,train',
      'Measurements to run; the others are kept from an existing --json.', flag_values=values)
  flags.DEFINE_string(
      'json', os.path.join(REPO, 'benchmarks/results/full_size.json'), '', flag_values=values)
  flags.DEFINE_string(
      'job', '', '(set by the parent process)', flag_values=values)
  flags.DEFINE_string('sample', 'full', '(set by the parent process)', flag_values=values)
  return bench_config.parse_flags(values, argv)


def make_config(args: flags.FlagValues, sample: dict, tfds_dir: str):
  config = default.get_config()
  config.data_dir = tfds_dir
  config.sample.enabled = True
  config.sample.update(seed=0, **sample)
  config.batch_size = args.batch_size
  config.progress_bar = False
  config.augment.crop_padding = 4
  config.model.update(depth=11, width=args.width, hidden_units=args.hidden_units)
  return config


def sample_config(args, sample: dict):
  """The config whose sample lives under `--data_dir` (generated there once)."""
  return make_config(args, sample, args.data_dir)


def tfds_dir(args, sample_name: str) -> str:
  return os.path.join(args.data_dir, f'tfds_{sample_name}')


def peak_rss_mib() -> float:
  """This process's peak resident memory so far."""
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB.


def rss_mib() -> float:
  """This process's resident memory now."""
  with open('/proc/self/statm', encoding='utf-8') as f:
    return int(f.read().split()[1]) * os.sysconf('SC_PAGE_SIZE') / 2**20


# --- Jobs, each in its own process ---------------------------------------------------------


def child_config(args):
  """The config of a child job: the sample's files, prepared in the sample's TFDS dir."""
  sample = FULL if args.sample == 'full' else FIFTH
  config = make_config(args, sample, tfds_dir(args, args.sample))
  config.data_source = str(pipeline.generate_sample(sample_config(args, sample)))
  return config


def timed_input_epoch(config, dataset, epoch: int, augment) -> tuple[float, float]:
  """Images a second of one train epoch (host pipeline plus on-device augmentation), and
  the largest resident memory seen every 100 batches."""
  rng = jax.random.key(epoch)
  start, count, largest_rss = time.perf_counter(), 0, 0.0
  for step, batch in enumerate(dataset.train_batches(config, epoch=epoch)):
    augment(jnp.asarray(batch['image']), rng=jax.random.fold_in(rng, step)).block_until_ready()
    count += len(batch['image'])
    if step % 100 == 0:
      largest_rss = max(largest_rss, rss_mib())
  return count / (time.perf_counter() - start), largest_rss


def input_job(args, cache: bool, epochs: int) -> dict:
  """Train input img/s per epoch (epoch 0 decodes) and this process's peak RSS."""
  config = child_config(args)
  config.cache = cache
  dataset = pipeline.open_dataset(config)
  info = dataset.info
  augment = jax.jit(functools.partial(
      preprocess, image_size=config.image_size, flip=True,
      crop_padding=config.augment.crop_padding))
  augment(jnp.zeros((args.batch_size,) + info.image_shape, jnp.uint8),
          rng=jax.random.key(0)).block_until_ready()  # Compiled before timing.
  rss_before = rss_mib()
  rates, rss = zip(*[timed_input_epoch(config, dataset, epoch, augment)
                     for epoch in range(epochs)])
  return {'train_images': info.split_sizes['train'], 'epoch_img_s': rates,
          'rss_before_input_mib': rss_before, 'epoch_rss_mib': rss,
          'peak_rss_mib': peak_rss_mib()}


def train_job(args, epoch: bool = True) -> dict:
  """The loop's own overhead, then (with `epoch`) one epoch of a narrow VGG-11 end to end
  with cache=True and the evaluation."""
  from benchmarks import epoch_overhead  # pylint: disable=g-import-not-at-top
  from vgg_flax.train import loop as train  # pylint: disable=g-import-not-at-top
  config = child_config(args)
  config.cache = True
  trainer, state = train.create_trainer(config)
  state, warmup_s = epoch_overhead.warm_up(trainer, state)
  state, overhead = epoch_overhead.loop_overhead(trainer, state, epoch=1,
                                                 repeats=args.overhead_repeats,
                                                 steps=args.overhead_steps)
  report = {'model': f'VGG-11 width {args.width}, hidden {args.hidden_units}, batch '
                     f'{args.batch_size}, 64 px', 'steps': trainer.steps_per_epoch,
            'warmup_s': warmup_s, 'loop_overhead': overhead['overhead'],
            'host_share': overhead['host_share'], 'overhead_detail': overhead}
  # Kept in the log should the epoch not finish.
  print(f'overhead: {json.dumps(report)}', file=sys.stderr, flush=True)
  if not epoch:
    return report
  state, epoch_s = epoch_overhead.time_epoch(trainer, state, 2)
  images = trainer.steps_per_epoch * args.batch_size
  report.update(epoch_s=epoch_s, epoch_img_s=images / epoch_s, peak_rss_mib=peak_rss_mib())
  print(f'epoch: {json.dumps(report)}', file=sys.stderr, flush=True)
  start = time.perf_counter()
  val = train.evaluate_split(trainer, state, config.eval_split)
  return {**report, 'eval_s': time.perf_counter() - start, 'val_accuracy': val['accuracy']}


def run_job(args, job: str, sample: str) -> dict:
  """Runs one measurement in a fresh process and returns its JSON report."""
  command = [sys.executable, '-m', 'benchmarks.full_size', '--job', job, '--sample', sample,
             '--data_dir', args.data_dir, '--batch_size', str(args.batch_size),
             '--cached_epochs', str(args.cached_epochs), '--width', str(args.width),
             '--hidden_units', str(args.hidden_units), '--overhead_steps',
             str(args.overhead_steps), '--overhead_repeats', str(args.overhead_repeats)]
  done = subprocess.run(command, check=True, stdout=subprocess.PIPE, text=True, cwd=REPO)
  report = json.loads(done.stdout.strip().splitlines()[-1])
  print(f'{job} ({sample}): {json.dumps(report)}', flush=True)
  return report


def child_main(args) -> None:
  if args.job == 'cached':
    report = input_job(args, cache=True, epochs=1 + args.cached_epochs)
  elif args.job == 'streaming':
    report = input_job(args, cache=False, epochs=2)
  else:
    report = train_job(args, epoch=args.job == 'train')
  print(json.dumps(report))


# --- Generation and preparation, in this process -------------------------------------------


def generate(args, sample: dict) -> dict:
  """Writes the sample (or reuses it) and returns its generation time."""
  config = sample_config(args, sample)
  folder = pipeline.sample_folder(config)
  record = folder / 'generation.json'
  if args.reuse_data and record.exists():
    return {**json.loads(record.read_text()), 'reused': True}
  shutil.rmtree(folder, ignore_errors=True)
  start = time.perf_counter()
  pipeline.generate_sample(config)
  seconds = time.perf_counter() - start
  images = sum(sample[k] * (sample['num_classes'] if k != 'test_images' else 1)
               for k in ('train_per_class', 'val_per_class', 'test_images'))
  result = {'seconds': seconds, 'images': images, 'img_s': images / seconds}
  record.write_text(json.dumps(result))
  return {**result, 'reused': False}


# Prepares a source with the `input_pipeline` of the checkout given first (this one, or the
# --baseline); prints the seconds and images as JSON, and images per CPU second (all threads),
# which a busy machine changes less than the wall time. TensorFlow is imported before timing.
PREPARE = """
import json, sys, time
import tensorflow_datasets as tfds
from input_pipeline import tiny_imagenet
tfds.disable_progress_bar()
start, cpu_start = time.perf_counter(), time.process_time()
builder = tiny_imagenet.make_builder(sys.argv[2], data_dir=sys.argv[3])
builder.download_and_prepare()
seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
images = sum(split.num_examples for split in builder.info.splits.values())
print(json.dumps({'seconds': seconds, 'images': images, 'img_s': images / seconds,
                  'img_per_cpu_s': images / cpu_seconds,
                  'split_sizes': {k: v.num_examples for k, v in builder.info.splits.items()}}))
"""


def prepare_with(code: str, source: str, data_dir: str) -> dict:
  """Prepares `source` into a fresh `data_dir` with the code of checkout `code`, timed."""
  shutil.rmtree(data_dir, ignore_errors=True)
  done = subprocess.run([sys.executable, '-c', PREPARE, code, source, data_dir], check=True,
                        stdout=subprocess.PIPE, text=True, cwd=code)
  return json.loads(done.stdout.strip().splitlines()[-1])


def same_examples(data_dir: str, other_dir: str) -> bool:
  """Whether two prepared TFDS data dirs hold the same shard files with the same examples.

  Examples are compared parsed: TFDS's generic path writes a `tf.train.Example`'s features
  in an order that changes from process to process.
  """
  shards = [sorted(pathlib.Path(d).glob('tiny_imagenet/*/*/*.tfrecord*'))
            for d in (data_dir, other_dir)]
  if [p.name for p in shards[0]] != [p.name for p in shards[1]]:
    return False
  for ours, theirs in zip(*shards):
    records = itertools.zip_longest(*(tf.data.TFRecordDataset(str(p)).as_numpy_iterator()
                                      for p in (ours, theirs)))
    if any(a is None or b is None or tf.train.Example.FromString(a) !=
           tf.train.Example.FromString(b) for a, b in records):
      return False
  return True


def prepare(args, sample: dict, sample_name: str) -> dict:
  """Prepares the sample into a fresh TFDS dir and returns the img/s of preparation.

  With --baseline, the baseline checkout prepares the same source too, alternating with this
  code (--prepare_repeats times each), and the examples of the two are compared.
  """
  config = sample_config(args, sample)
  source = str(pipeline.generate_sample(config))
  data_dir = tfds_dir(args, sample_name)
  if args.reuse_prepared and os.path.isdir(data_dir):
    config.data_source, config.data_dir = source, data_dir
    info = pipeline.get_dataset_info(config)
    return {'reused': True, 'images': sum(info.split_sizes.values())}
  runs = {'this': [], 'baseline': []}
  for _ in range(args.prepare_repeats):
    if args.baseline:
      runs['baseline'].append(prepare_with(args.baseline, source, data_dir + '_baseline'))
    runs['this'].append(prepare_with(REPO, source, data_dir))
  report = {**runs['this'][-1], 'img_s': median([r['img_s'] for r in runs['this']]),
            'runs_img_s': [r['img_s'] for r in runs['this']],
            'img_per_cpu_s': median([r['img_per_cpu_s'] for r in runs['this']])}
  if args.baseline:
    baseline = [r['img_s'] for r in runs['baseline']]
    report.update(baseline=args.baseline, baseline_img_s=median(baseline),
                  baseline_runs_img_s=baseline, baseline_img_per_cpu_s=median(
                      [r['img_per_cpu_s'] for r in runs['baseline']]),
                  speedup=median([t['img_s'] / b['img_s']
                                  for t, b in zip(runs['this'], runs['baseline'])]),
                  same_examples=same_examples(data_dir, data_dir + '_baseline'))
    shutil.rmtree(data_dir + '_baseline')
  return report


def summary(report: dict) -> dict:
  """Each target's figure (of the measurements there are) and whether it is met."""
  figures = {'prepare_img_s': report['prepare'].get('full', {}).get('img_s')}
  if report.get('cached'):
    figures['cached_img_s'] = min(report['cached']['epoch_img_s'][1:])
  streaming = report.get('streaming', {})
  if 'full' in streaming:
    figures['streaming_img_s'] = min(streaming['full']['epoch_img_s'])
  if 'full' in streaming and 'fifth' in streaming:
    figures['streaming_rss_growth_mib'] = (max(streaming['full']['epoch_rss_mib'])
                                           - max(streaming['fifth']['epoch_rss_mib']))
  if report.get('train'):
    figures['cached_train_rss_gib'] = report['train']['peak_rss_mib'] / 1024
  if report.get('overhead') or report.get('train'):
    figures['loop_overhead'] = (report.get('overhead') or report['train'])['loop_overhead']
  higher_is_better = ('prepare_img_s', 'cached_img_s', 'streaming_img_s')
  return {name: {'value': value, 'target': TARGETS[name],
                 'met': None if value is None else (
                     value >= TARGETS[name] if name in higher_is_better
                     else value <= TARGETS[name])}
          for name, value in figures.items()}


def main(argv=None) -> dict:
  args = parse_args(argv)
  if args.job:
    child_main(args)
    return {}
  cpu = next((l.split(':', 1)[1].strip() for l in open('/proc/cpuinfo', encoding='utf-8')
              if l.startswith('model name')), 'unknown')
  report = {'cpu': cpu, 'cores': os.cpu_count(), 'args': args.flag_values_dict(), 'generation': {},
            'prepare': {}, 'streaming': {}}
  earlier = {}
  if args.json and os.path.exists(args.json):
    with open(args.json, encoding='utf-8') as f:
      earlier = json.load(f)
  previous = earlier.get('prepare', {}) if args.reuse_prepared else {}
  for name, sample in (('full', FULL), ('fifth', FIFTH)):
    if name not in args.prepare_samples.split(','):
      continue  # A job that needs it generates and prepares it.
    report['generation'][name] = generate(args, sample)
    print(f'generation ({name}): {report["generation"][name]}', flush=True)
    report['prepare'][name] = prepare(args, sample, name)
    if report['prepare'][name].get('reused') and 'img_s' in previous.get(name, {}):
      report['prepare'][name] = {**previous[name], 'reused': True}
    print(f'prepare ({name}): {report["prepare"][name]}', flush=True)
  jobs = args.jobs.split(',')
  report['cached'] = run_job(args, 'cached', 'full') if 'cached' in jobs else earlier.get(
      'cached')
  for name in ('full', 'fifth'):
    report['streaming'][name] = (run_job(args, 'streaming', name) if 'streaming' in jobs
                                 else earlier.get('streaming', {}).get(name))
  report['streaming'] = {k: v for k, v in report['streaming'].items() if v}
  for job in ('train', 'overhead'):  # 'overhead': the train job without its epoch.
    report[job] = run_job(args, job, 'full') if job in jobs else earlier.get(job)
  report['summary'] = summary(report)
  print(json.dumps(report['summary'], indent=2))
  if args.json:
    os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
    with open(args.json, 'w', encoding='utf-8') as f:
      json.dump(report, f, indent=2)
  return report


if __name__ == '__main__':
  main()
