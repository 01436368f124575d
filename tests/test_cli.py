"""main.py's command line: each mode's default config, and one-line override errors."""

import pathlib
import subprocess
import sys

from absl import flags
from ml_collections import config_flags
import pytest

from configs import smoke
from input_pipeline import pipeline
from input_pipeline import tiny_imagenet
from vgg_flax.cli import flags as cli
from vgg_flax.workdir import config as configuration

REPO = pathlib.Path(__file__).resolve().parents[1]


def parse(*args):
  """cli.parse_flags on fresh flags shaped like main.py's; returns the parsed flags."""
  argv = ['main.py', *args]
  values = flags.FlagValues()
  flags.DEFINE_enum('mode', 'train', cli.MODES, '', flag_values=values)
  config_flags.DEFINE_config_file('config', None, '', flag_values=values, lock_config=True,
                                  sys_argv=argv)
  cli.parse_flags(argv, values)
  return values


def parse_error(*args) -> str:
  with pytest.raises(configuration.ConfigError) as raised:
    parse(*args)
  message = str(raised.value)
  assert '\n' not in message
  return message


# --- Default configs ----------------------------------------------------------------------


@pytest.mark.parametrize('mode', ['train', 'evaluate', 'predict'])
def test_single_model_modes_default_to_the_smoke_config(mode):
  values = parse(f'--mode={mode}')
  assert values.config.to_dict() == smoke.get_config().to_dict()
  assert config_flags.get_config_filename(values['config']) == str(REPO / 'configs/smoke.py')


@pytest.mark.parametrize('mode', ['predict_ensemble', 'summary'])
def test_ensemble_modes_default_to_the_ensemble_config(mode):
  values = parse('--mode', mode, '--config.tie_break=lowest_class')
  assert values.config.members[0] == ('11', 'runs/vgg11')
  assert values.config.tie_break == 'lowest_class'


def test_a_given_config_wins_and_overrides_apply():
  values = parse('--mode=summary', f'--config={REPO / "configs/vgg16.py"}',
                 '--config.model.depth=13', '--noconfig.model.batch_norm')
  assert (values.config.model.depth, values.config.model.batch_norm) == (13, False)
  assert 'members' not in values.config


def test_help_names_each_modes_default():
  assert 'predict_ensemble uses configs/ensemble.py' in cli.mode_help()
  assert 'train uses configs/smoke.py' in cli.mode_help()
  assert cli.default_configs_help() == ('configs/smoke.py with --mode=train|evaluate|predict; '
                                        'configs/ensemble.py with --mode=predict_ensemble|summary')


# --- Override mistakes --------------------------------------------------------------------


@pytest.mark.parametrize('name,closest', [('model.dept', 'model.depth'),
                                          ('modle.depth', 'model.depth'),
                                          ('learning_rat', 'learning_rate'),
                                          ('early_stopping.patiense', 'early_stopping.patience')])
def test_unknown_field_names_the_closest(name, closest):
  assert parse_error(f'--config.{name}=1') == f"no field {name!r}; did you mean {closest!r}?"


def test_unknown_field_without_a_close_one():
  assert parse_error('--config.xyzzy=1') == (
      "no field 'xyzzy' in configs/smoke.py; configs/default.py lists every field with a "
      'one-line comment.')


@pytest.mark.parametrize('field', ['members', 'tie_break', 'num_sample_images'])
def test_field_of_another_config_names_it(field):
  assert parse_error(f'--config.{field}=1') == (
      f"configs/smoke.py has no field {field!r}; it lives in configs/ensemble.py "
      '(use --config=configs/ensemble.py).')


@pytest.mark.parametrize('override,message', [
    ('model.depth=abc', "--config.model.depth=abc: model.depth takes an int, not 'abc' "
                        '(the config has 11).'),
    ('learning_rate=fast', "--config.learning_rate=fast: learning_rate takes a number, not "
                           "'fast' (the config has 0.001)."),
    ('model.conv1x1=maybe', "--config.model.conv1x1=maybe: model.conv1x1 takes a bool (True or "
                            "False), not 'maybe' (the config has False)."),
])
def test_wrong_type_names_the_field_and_the_type(override, message):
  assert parse_error(f'--config.{override}') == message


def test_overrides_in_a_flagfile_are_checked(tmp_path):
  flagfile = tmp_path / 'flags.txt'
  flagfile.write_text('--config.model.depth=13\n')
  assert parse(f'--flagfile={flagfile}').config.model.depth == 13
  flagfile.write_text('--config.model.dept=13\n')
  assert parse_error(f'--flagfile={flagfile}') == (
      "no field 'model.dept'; did you mean 'model.depth'?")


def test_missing_config_file():
  assert parse_error('--config=configs/vgg17.py').startswith(
      'config file configs/vgg17.py does not exist;')


@pytest.mark.parametrize('args, named', [
    (['--jax_platforms=cpu'], True), (['-jax_enable_x64'], True), (['--nojax_enable_x64'], True),
    (['--config.jax_thing=1', '--mode=train'], False), (['--workdir=jax_runs'], False)])
def test_jax_flags_are_recognised(args, named):
  assert cli.names_jax_flags(['main.py', *args]) is named


def test_closest_field():
  fields = ['model.depth', 'model.width', 'batch_size']
  assert cli.closest_field('model.widht', fields) == 'model.width'
  assert cli.closest_field('quux', fields) is None


# --- The download error -------------------------------------------------------------------


def test_download_error_says_how_to_run_offline(monkeypatch, tmp_path):
  def offline(*args, **kwargs):
    raise tiny_imagenet.urllib.error.URLError('no network')
  monkeypatch.setattr(tiny_imagenet.urllib.request, 'urlopen', offline)
  with pytest.raises(pipeline.DataError) as raised:
    tiny_imagenet.download_official(tmp_path)
  message = str(raised.value)
  assert '\n' not in message
  assert 'set config.data_source to its path' in message
  assert 'run offline on the generated sample: python main.py --config=configs/smoke.py' in message
  assert not list(tmp_path.iterdir())  # No partial download left behind.


# --- Through main.py ----------------------------------------------------------------------

MAIN_RUNS = {
    'misspelt': ['--config.model.dept=12'],
    'wrong_type': [f'--config={REPO / "configs/vgg16.py"}', '--config.model.depth=abc'],
    'other_config': ["--config.members=(('a', 'runs/a'),)"],
    'untrained_members': ['--mode=predict_ensemble'],
    'help': ['--help'],
    'jax_flag': ['--jax_platforms=cpu', '--config.model.dept=12'],
}


@pytest.fixture(scope='module')
def main_runs(tmp_path_factory):
  """main.py with each argument list of MAIN_RUNS, started together (each spends seconds
  importing JAX and TensorFlow), in an empty working directory."""
  cwd = tmp_path_factory.mktemp('cli')
  processes = {name: subprocess.Popen(
      [sys.executable, str(REPO / 'main.py'), *args, '--workdir=out'], cwd=cwd,
      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
               for name, args in MAIN_RUNS.items()}
  results = {}
  for name, process in processes.items():
    stdout, stderr = process.communicate(timeout=300)
    results[name] = (process.returncode, stdout, stderr)
  assert not (cwd / 'out').exists()  # Nothing written by a command that cannot run.
  return results


def error_lines(stderr):
  assert 'Traceback' not in stderr
  return [line for line in stderr.splitlines() if line.startswith('error:')]


@pytest.mark.slow
@pytest.mark.parametrize('run,message', [
    ('misspelt', "error: no field 'model.dept'; did you mean 'model.depth'?"),
    ('jax_flag', "error: no field 'model.dept'; did you mean 'model.depth'?"),
    ('wrong_type', "error: --config.model.depth=abc: model.depth takes an int, not 'abc' "
                   '(the config has 16).'),
    ('other_config', "error: configs/smoke.py has no field 'members'; it lives in "
                     'configs/ensemble.py (use --config=configs/ensemble.py).'),
    ('untrained_members', "error: member '11': workdir runs/vgg11 does not exist; train it "
                          'first: python main.py --config=configs/vgg11.py --workdir=runs/vgg11'),
])
def test_main_mistake_is_one_line_and_exit_2(main_runs, run, message):
  returncode, _, stderr = main_runs[run]
  assert returncode == 2
  assert error_lines(stderr) == [message]


@pytest.mark.slow
def test_main_help_shows_the_modes_and_their_default_configs(main_runs):
  _, stdout, _ = main_runs['help']
  assert '<train|evaluate|predict|predict_ensemble|summary>' in stdout
  help_text = ' '.join(stdout.split())  # absl wraps the help at 80 columns.
  assert 'predict_ensemble uses configs/ensemble.py, summary uses configs/ensemble.py' in help_text
  assert ('(default: configs/smoke.py with --mode=train|evaluate|predict; configs/ensemble.py '
          'with --mode=predict_ensemble|summary)') in help_text


@pytest.mark.slow
def test_main_answers_a_flag_mistake_without_importing_jax_or_tensorflow(tmp_path):
  result = subprocess.run(
      [sys.executable, '-X', 'importtime', str(REPO / 'main.py'), '--config.model.dept=12',
       f'--workdir={tmp_path / "out"}'], cwd=tmp_path, capture_output=True, text=True,
      timeout=120, check=False)
  assert result.returncode == 2
  assert error_lines(result.stderr) == ["error: no field 'model.dept'; did you mean "
                                        "'model.depth'?"]
  imported = {line.split('|')[-1].strip().split('.')[0]
              for line in result.stderr.splitlines() if line.startswith('import time:')}
  assert {'absl', 'ml_collections', 'vgg_flax'} <= imported
  assert not imported & {'jax', 'jaxlib', 'tensorflow', 'flax', 'orbax'}


def test_main_on_a_python_older_than_3_12_says_which_is_needed():
  # main.py as an older interpreter would run it: the check comes before any import.
  script = ('import runpy, sys; sys.version_info = (3, 11, 7, "final", 0); '
            'runpy.run_path("main.py", run_name="__main__")')
  result = subprocess.run([sys.executable, '-c', script], cwd=REPO, capture_output=True,
                          text=True, timeout=60)
  assert result.returncode == 2
  assert result.stderr == ('error: vgg_flax needs Python 3.12 or newer (JAX 0.11 and later '
                           'do); this is Python 3.11. Make the venv with python3.12.\n')
