"""No import circle between the project's modules, imports inside functions included.

The layers read top to bottom (configs -> input pipeline -> model/steps -> loop -> modes); a
circle, even one hidden in a function-level import, means two modules are really one.
"""

import ast
import pathlib

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
PACKAGES = ('vgg_flax', 'input_pipeline', 'configs', 'benchmarks')
SCRIPTS = ('main.py',)


def project_modules(root: pathlib.Path = REPO) -> dict[str, pathlib.Path]:
  """Dotted module name -> file, for every module of `PACKAGES` and the `SCRIPTS`."""
  modules = {}
  for package in PACKAGES:
    for path in sorted((root / package).glob('*.py')):
      name = package if path.stem == '__init__' else f'{package}.{path.stem}'
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
      # The longest known prefix: `vgg_flax.workdir.X` -> `vgg_flax.workdir`.
      parts = name.split('.')
      for end in range(len(parts), 0, -1):
        if '.'.join(parts[:end]) in known:
          found.add('.'.join(parts[:end]))
          break
  return found


def import_graph(root: pathlib.Path = REPO) -> dict[str, set[str]]:
  """Module -> the project modules it imports (a package's `__init__` alone is left out)."""
  modules = project_modules(root)
  known = set(modules)
  graph = {}
  for name, path in modules.items():
    imports = imported_modules(ast.parse(path.read_text(), filename=str(path)), known)
    # `from vgg_flax import x` names the package too; its empty __init__ closes no circle.
    graph[name] = {m for m in imports if m != name and m not in PACKAGES}
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


def test_find_cycle_names_the_circle_of_a_crafted_graph():
  graph = {'a': {'b'}, 'b': {'c'}, 'c': {'a', 'd'}, 'd': set()}
  assert find_cycle(graph) == ['a', 'b', 'c', 'a']
  assert find_cycle({'a': {'b'}, 'b': {'c'}, 'c': set(), 'd': {'a', 'c'}}) is None
  assert find_cycle({'x': {'x'}}) == ['x', 'x']


def test_function_level_imports_count(tmp_path):
  """A circle hidden in a function's import is found, as the one predict/ensemble had."""
  (tmp_path / 'vgg_flax').mkdir()
  for package in PACKAGES[1:]:
    (tmp_path / package).mkdir()
  (tmp_path / 'main.py').write_text('from vgg_flax import runner\n')
  (tmp_path / 'vgg_flax' / '__init__.py').write_text('')
  (tmp_path / 'vgg_flax' / 'runner.py').write_text('from vgg_flax import predict\n')
  (tmp_path / 'vgg_flax' / 'predict.py').write_text(
      'import numpy\n\ndef run():\n  from vgg_flax import ensemble\n  return ensemble\n')
  (tmp_path / 'vgg_flax' / 'ensemble.py').write_text('from vgg_flax.predict import run\n')
  graph = import_graph(tmp_path)
  assert graph == {'main': {'vgg_flax.runner'}, 'vgg_flax': set(),
                   'vgg_flax.runner': {'vgg_flax.predict'},
                   'vgg_flax.predict': {'vgg_flax.ensemble'},
                   'vgg_flax.ensemble': {'vgg_flax.predict'}}
  assert find_cycle(graph) == ['vgg_flax.predict', 'vgg_flax.ensemble', 'vgg_flax.predict']


def test_every_project_module_is_parsed():
  graph = import_graph()
  for name in ('main', 'vgg_flax.train', 'vgg_flax.workdir', 'vgg_flax.inference',
               'vgg_flax.factory', 'input_pipeline.pipeline', 'configs.vgg16',
               'benchmarks.gpu'):
    assert name in graph
  assert 'vgg_flax.runner' in graph['main']
  assert {'vgg_flax.factory', 'vgg_flax.inference', 'vgg_flax.workdir'} <= graph['vgg_flax.train']


def test_no_import_circle():
  cycle = find_cycle(import_graph())
  if cycle:
    pytest.fail('import circle: ' + ' -> '.join(cycle))


def test_factory_and_steps_import_no_data_pipeline():
  """The TF-free layer (benchmarks on JAX-only hosts) reaches no input_pipeline module."""
  graph = import_graph()
  seen, todo = set(), ['vgg_flax.factory']
  while todo:
    module = todo.pop()
    if module not in seen:
      seen.add(module)
      todo.extend(graph[module])
  assert 'vgg_flax.steps' in seen
  assert not {m for m in seen if m.startswith('input_pipeline')}, sorted(seen)
