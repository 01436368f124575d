"""The generated sample: the exact Tiny ImageNet layout, determinism, learnable classes."""

import hashlib
import time
import zipfile

import numpy as np
from PIL import Image

from input_pipeline import synthetic


def read_tsv(path):
  return [line.split('\t') for line in path.read_text().splitlines()]


def test_layout_and_counts(sample_folder, sample_params):
  assert sample_folder.name == 'tiny-imagenet-200'
  wnids = (sample_folder / 'wnids.txt').read_text().split()
  assert len(wnids) == sample_params['num_classes'] and wnids != sorted(wnids)
  assert all(w[0] == 'n' and len(w) == 9 and w[1:].isdigit() for w in wnids)
  for wnid in wnids:
    images = sorted(p.name for p in (sample_folder / 'train' / wnid / 'images').iterdir())
    assert images == sorted(f'{wnid}_{i}.JPEG' for i in range(sample_params['train_per_class']))
    boxes = read_tsv(sample_folder / 'train' / wnid / f'{wnid}_boxes.txt')
    assert sorted(b[0] for b in boxes) == images
    assert all(len(b) == 5 and 0 <= int(b[1]) < int(b[3]) < 64 for b in boxes)
  annotations = read_tsv(sample_folder / 'val' / 'val_annotations.txt')
  num_val = sample_params['num_classes'] * sample_params['val_per_class']
  assert [a[0] for a in annotations] == [f'val_{i}.JPEG' for i in range(num_val)]
  assert all(len(a) == 6 for a in annotations)
  assert sorted(a[1] for a in annotations) == sorted(wnids * sample_params['val_per_class'])
  assert len(list((sample_folder / 'val' / 'images').iterdir())) == num_val
  assert len(list((sample_folder / 'test' / 'images').iterdir())) == sample_params['test_images']


def test_words_cover_wnids_plus_unrelated_synsets(sample_folder):
  wnids = set((sample_folder / 'wnids.txt').read_text().split())
  words = dict(read_tsv(sample_folder / 'words.txt'))
  assert wnids < set(words)
  assert len(words) > 2 * len(wnids)


def test_images_are_64px_jpegs_some_grayscale(tmp_path):
  # A larger draw, to see the few percent of grayscale files.
  folder = synthetic.write_sample(tmp_path, num_classes=5, train_per_class=100,
                                  val_per_class=1, test_images=1)
  modes = []
  for path in (folder / 'train').glob('*/images/*.JPEG'):
    with Image.open(path) as image:
      assert image.format == 'JPEG' and image.size == (64, 64)
      modes.append(image.mode)
  assert set(modes) == {'RGB', 'L'}
  assert 0.005 <= modes.count('L') / len(modes) <= 0.08


def test_same_seed_same_files_other_seed_differs(tmp_path, sample_zip, sample_params):
  again = synthetic.write_sample(tmp_path / 'a', zip=True, **sample_params)
  other = synthetic.write_sample(tmp_path / 'b', zip=True, **{**sample_params, 'seed': 1})
  digest = lambda p: hashlib.md5(p.read_bytes()).hexdigest()
  assert digest(again) == digest(sample_zip)
  assert digest(other) != digest(sample_zip)


def test_zip_holds_the_folder(sample_folder, sample_zip):
  assert sample_zip.name == 'tiny-imagenet-200.zip'
  names = set(zipfile.ZipFile(sample_zip).namelist())
  files = {f'tiny-imagenet-200/{p.relative_to(sample_folder)}'
           for p in sample_folder.rglob('*') if p.is_file()}
  assert names == files


def test_fast_enough(tmp_path):
  start = time.perf_counter()
  synthetic.write_sample(tmp_path, num_classes=10, train_per_class=120, val_per_class=20,
                         test_images=100)
  assert time.perf_counter() - start < 8  # 1,500 images; about 1.5 s on 2 cores.


def test_classes_are_learnable(sample_folder):
  """A nearest-centroid classifier on 8x8 thumbnails beats chance by far: there is signal."""
  wnids = sorted((sample_folder / 'wnids.txt').read_text().split())

  def features(path):
    with Image.open(path) as image:
      return np.asarray(image.convert('RGB').resize((8, 8)), np.float32).ravel() / 255

  centroids = np.stack([
      np.mean([features(p) for p in (sample_folder / 'train' / w / 'images').iterdir()], 0)
      for w in wnids])
  annotations = read_tsv(sample_folder / 'val' / 'val_annotations.txt')
  hits = [np.argmin(((centroids - features(sample_folder / 'val' / 'images' / name)) ** 2)
                    .sum(1)) == wnids.index(wnid) for name, wnid, *_ in annotations]
  assert np.mean(hits) >= 2 / len(wnids)


def test_cli_writes_zip(tmp_path, capsys):
  synthetic.main(['--output', str(tmp_path), '--num_classes', '3', '--train_per_class', '2',
                  '--val_per_class', '2', '--test_images', '2', '--image_size', '48', '--zip'])
  path = tmp_path / 'tiny-imagenet-200.zip'
  assert capsys.readouterr().out.strip() == str(path)
  with zipfile.ZipFile(path) as archive:
    assert len([n for n in archive.namelist() if n.endswith('.JPEG')]) == 3 * 2 + 3 * 2 + 2
    with archive.open('tiny-imagenet-200/test/images/test_0.JPEG') as f:
      assert Image.open(f).size == (48, 48)
