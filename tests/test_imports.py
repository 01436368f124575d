"""The layers' import rules, read from the source (imports inside functions included).

  main.py, the shims   ->  cli  ->  modes  ->  train  ->  interop  ->  workdir  ->  core
                                                  plots, errors, input_pipeline, configs

Each layer imports only layers to its right (docs/design.md draws them): `core` imports
nothing else of the project; nothing below `cli` imports it; only the entry points (main.py,
the shims, the benchmarks) import `modes`; no import circle; no module is named like a
standard-library module or a dependency.
"""

import ast
import importlib.metadata
import pathlib
import sys

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
PACKAGES = ('vgg_flax', 'input_pipeline', 'configs', 'benchmarks')
SCRIPTS = ('main.py',)
# Modules of `vgg_flax` that keep the public names and commands where users found them; like
# main.py they are entry points.
SHIMS = ('vgg_flax.models', 'vgg_flax.convert', 'vgg_flax.export', 'vgg_flax.ensemble')
ENTRY_POINTS = ('main', *SHIMS)


def is_entry_point(module: str) -> bool:
  """main.py, the shims and each benchmark: programs, which may import any layer."""
  return module in ENTRY_POINTS or module.startswith('benchmarks.')
# Each layer of vgg_flax and what it may import of the project (besides itself).
BASE = ('vgg_flax', 'vgg_flax.errors', 'configs', 'input_pipeline')
MAY_IMPORT = {
    'vgg_flax.core': (),
    'vgg_flax.workdir': ('vgg_flax.core', *BASE),
    'vgg_flax.interop': ('vgg_flax.core', 'vgg_flax.workdir', *BASE),
    'vgg_flax.plots': ('vgg_flax.workdir',),
    'vgg_flax.train': ('vgg_flax.core', 'vgg_flax.workdir', 'vgg_flax.interop',
                       'vgg_flax.plots', *BASE),
    'vgg_flax.modes': ('vgg_flax.core', 'vgg_flax.workdir', 'vgg_flax.train', 'vgg_flax.plots',
                       *BASE),
}


def project_modules(root: pathlib.Path = REPO) -> dict[str, pathlib.Path]:
  """Dotted module name -> file, for every module of `PACKAGES` and the `SCRIPTS`."""
  modules = {}
  for package in PACKAGES:
    for path in sorted((root / package).rglob('*.py')):
      parts = path.relative_to(root).with_suffix('').parts
      name = '.'.join(parts[:-1] if parts[-1] == '__init__' else parts)
      modules[name] = path
  for script in SCRIPTS:
    modules[pathlib.Path(script).stem] = root / script
  return modules


def imported_modules(tree: ast.AST, known: set[str]) -> set[str]:
  """The `known` modules a module's code imports anywhere (module level or in functions)."""
  found = set()
  for node in ast.walk(tree):
    if isinstance(node, ast.Import):
      names = [alias.name for alias in node.names]
    elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
      # `from package import module` imports the module; `from module import name` the module.
      names = [f'{node.module}.{alias.name}' for alias in node.names] + [node.module]
    else:
      continue
    for name in names:
      # The longest known prefix: `vgg_flax.workdir.files.X` -> `vgg_flax.workdir.files`.
      parts = name.split('.')
      for end in range(len(parts), 0, -1):
        if '.'.join(parts[:end]) in known:
          found.add('.'.join(parts[:end]))
          break
  return found


def import_graph(root: pathlib.Path = REPO) -> dict[str, set[str]]:
  """Module -> the project modules it imports.

  A package's `__init__` counts as imported only when it is the module named: `from
  vgg_flax.core import models` names the package only on the way to its module.
  """
  modules = project_modules(root)
  known = set(modules)
  graph = {}
  for name, path in modules.items():
    imports = imported_modules(ast.parse(path.read_text(), filename=str(path)), known)
    # A package on the way to one of its modules is not an import of the package's code.
    graph[name] = {m for m in imports if m != name
                   and not any(other.startswith(m + '.') for other in imports)}
  return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
  """One import circle as [a, b, ..., a], or None when the graph has none."""
  state = {}  # Absent: unvisited; 1: on the current path; 2: finished.
  path = []

  def visit(node: str) -> list[str] | None:
    state[node] = 1
    path.append(node)
    for child in sorted(graph.get(node, ())):
      if state.get(child) == 1:
        return path[path.index(child):] + [child]
      if child not in state:
        cycle = visit(child)
        if cycle:
          return cycle
    path.pop()
    state[node] = 2
    return None

  for node in sorted(graph):
    if node not in state:
      cycle = visit(node)
      if cycle:
        return cycle
  return None


def layer_of(module: str) -> str | None:
  """The `MAY_IMPORT` layer a module belongs to (None outside them)."""
  return next((layer for layer in MAY_IMPORT
               if module == layer or module.startswith(layer + '.')), None)


def in_package(module: str, package: str) -> bool:
  return module == package or module.startswith(package + '.')


def test_find_cycle_names_the_circle_of_a_crafted_graph():
  graph = {'a': {'b'}, 'b': {'c'}, 'c': {'a', 'd'}, 'd': set()}
  assert find_cycle(graph) == ['a', 'b', 'c', 'a']
  assert find_cycle({'a': {'b'}, 'b': {'c'}, 'c': set(), 'd': {'a', 'c'}}) is None
  assert find_cycle({'x': {'x'}}) == ['x', 'x']


def test_function_level_imports_count(tmp_path):
  """A circle hidden in a function's import is found."""
  (tmp_path / 'vgg_flax' / 'modes').mkdir(parents=True)
  for package in PACKAGES[1:]:
    (tmp_path / package).mkdir()
  (tmp_path / 'main.py').write_text('from vgg_flax.modes import runner\n')
  (tmp_path / 'vgg_flax' / '__init__.py').write_text('')
  (tmp_path / 'vgg_flax' / 'modes' / '__init__.py').write_text('')
  (tmp_path / 'vgg_flax' / 'modes' / 'runner.py').write_text(
      'from vgg_flax.modes import predict\n')
  (tmp_path / 'vgg_flax' / 'modes' / 'predict.py').write_text(
      'import numpy\n\ndef run():\n  from vgg_flax.modes import ensemble\n  return ensemble\n')
  (tmp_path / 'vgg_flax' / 'modes' / 'ensemble.py').write_text(
      'from vgg_flax.modes.predict import run\n')
  graph = import_graph(tmp_path)
  assert graph == {'main': {'vgg_flax.modes.runner'}, 'vgg_flax': set(),
                   'vgg_flax.modes': set(),
                   'vgg_flax.modes.runner': {'vgg_flax.modes.predict'},
                   'vgg_flax.modes.predict': {'vgg_flax.modes.ensemble'},
                   'vgg_flax.modes.ensemble': {'vgg_flax.modes.predict'}}
  assert find_cycle(graph) == ['vgg_flax.modes.predict', 'vgg_flax.modes.ensemble',
                               'vgg_flax.modes.predict']


def test_every_project_module_is_parsed():
  graph = import_graph()
  for name in ('main', 'vgg_flax.train.loop', 'vgg_flax.workdir.restore',
               'vgg_flax.modes.predictions', 'vgg_flax.core.factory',
               'input_pipeline.pipeline', 'configs.vgg16', 'benchmarks.gpu'):
    assert name in graph
  assert 'vgg_flax.cli.flags' in graph['main']
  assert {'vgg_flax.core.factory', 'vgg_flax.core.steps',
          'vgg_flax.workdir.checkpoints'} <= graph['vgg_flax.train.loop']


def test_no_import_circle():
  cycle = find_cycle(import_graph())
  if cycle:
    pytest.fail('import circle: ' + ' -> '.join(cycle))


def test_core_imports_nothing_else_of_the_project():
  graph = import_graph()
  for module, imports in graph.items():
    if in_package(module, 'vgg_flax.core'):
      assert {m for m in imports if not in_package(m, 'vgg_flax.core')} == set(), module


def test_nothing_below_cli_imports_cli():
  for module, imports in import_graph().items():
    if is_entry_point(module) or in_package(module, 'vgg_flax.cli'):
      continue
    assert not {m for m in imports if in_package(m, 'vgg_flax.cli')}, module


def test_only_the_entry_points_import_modes():
  for module, imports in import_graph().items():
    if (is_entry_point(module) or in_package(module, 'vgg_flax.cli')
        or in_package(module, 'vgg_flax.modes')):
      continue
    assert not {m for m in imports if in_package(m, 'vgg_flax.modes')}, module


def test_each_layer_imports_only_the_layers_below_it():
  for module, imports in import_graph().items():
    layer = layer_of(module)
    if layer is None:
      continue
    allowed = (layer, *MAY_IMPORT[layer])
    wrong = sorted(m for m in imports
                   if not any(in_package(m, a) for a in allowed) and m in import_graph())
    assert not wrong, f'{module} imports {wrong}'


def test_the_tensorflow_free_core_reaches_no_input_pipeline():
  """What benchmarks on hosts without TensorFlow import reaches no input_pipeline module."""
  graph = import_graph()
  seen, todo = set(), ['vgg_flax.core.factory']
  while todo:
    module = todo.pop()
    if module not in seen:
      seen.add(module)
      todo.extend(graph[module])
  assert 'vgg_flax.core.steps' in seen
  assert not {m for m in seen if m.startswith('input_pipeline')}, sorted(seen)


def dependency_names() -> set[str]:
  """The top-level import names of every installed distribution."""
  return {name for name in importlib.metadata.packages_distributions()
          if not name.startswith('_')}


def test_no_module_is_named_like_a_standard_or_installed_module():
  taken = set(sys.stdlib_module_names) | dependency_names()
  clashes = sorted(name for name in project_modules()
                   if name.rsplit('.', 1)[-1] in taken and name not in PACKAGES)
  assert not clashes, clashes
