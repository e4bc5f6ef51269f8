"""The library's import boundaries, read from the source with ``ast`` (every import at any depth:
module level, in functions, under ``TYPE_CHECKING``, relative ones, ``importlib`` with a literal
name): the library knows nothing of Kubeflow; the steps that make training data never see the
ground truth; MLflow plumbing stays in ``qrewrite.tracking`` / ``qrewrite.registry`` and a few
steps that log today; only the CLI imports the library, never the other way round."""

from __future__ import annotations

import ast
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

SRC = Path(__file__).parents[1] / "src"

# 1. the Kubeflow layer: kfp, the components (components/ -> qrewrite_components) and the pipelines
# (pipelines/ -> qrewrite_pipelines)
KUBEFLOW = ("kfp", "qrewrite_components", "qrewrite_pipelines", "pipelines")
# ...except the CLI's pipeline commands (run --local, compile, submit, schedule), which call the
# pipelines package; even they never import kfp or the components themselves
PIPELINE_COMMANDS = "qrewrite.cli.pipeline"
# 2. what makes training data, and the truth it must never see: the simulator's ground truth, its
# lookup and label evaluation against it (all of qrewrite.evaluation)
TRUTH_BLIND = ("qrewrite.mining", "qrewrite.labeling", "qrewrite.training", "qrewrite.importing")
TRUTH = ("qrewrite.evaluation", "qrewrite.market.truth")
# 3. where MLflow plumbing lives, and the modules outside it that import mlflow today (a step's own
# run: its metrics, curves and reports). A new module importing mlflow fails: use qrewrite.tracking
MLFLOW_HOMES = ("qrewrite.tracking", "qrewrite.registry")
MLFLOW_TODAY = frozenset(
    {
        "qrewrite.evaluation.evaluate",
        "qrewrite.training.grpo",
        "qrewrite.training.pretrain",
        "qrewrite.training.sft",
    }
)
# 4. the command line: it imports the library, never the other way round
CLI = "qrewrite.cli"


@dataclass(frozen=True)
class Import:
    """One imported name: the importing module, the line, the modules it may load (for ``from a
    import b``: ``a`` and, should ``b`` be a module, ``a.b``) and the statement as written."""

    module: str
    line: int
    targets: tuple[str, ...]
    statement: str

    def reaches(self, prefixes: Iterable[str]) -> bool:
        """Whether it loads a module that is one of ``prefixes`` or inside one."""
        return any(t == p or t.startswith(f"{p}.") for t in self.targets for p in prefixes)

    def where(self) -> str:
        return f"{self.module}:{self.line}: `{self.statement}`"


def module_name(path: Path, root: Path = SRC) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _base(node: ast.ImportFrom, module: str, is_package: bool) -> str:
    """The absolute module of ``from <...> import``, relative ones resolved."""
    if not node.level:
        return node.module or ""
    package = module.split(".") if is_package else module.split(".")[:-1]
    package = package[: len(package) - (node.level - 1)]
    return ".".join([*package, *([node.module] if node.module else [])])


def imports_of(source: str, module: str, *, is_package: bool = False) -> Iterator[Import]:
    """Every import in ``source`` (the text of ``module``), wherever it stands."""
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield Import(module, node.lineno, (alias.name,), f"import {alias.name}")
        elif isinstance(node, ast.ImportFrom):
            base = _base(node, module, is_package)
            written = "." * node.level + (node.module or "")
            for alias in node.names:
                targets = (base,) if alias.name == "*" else (base, f"{base}.{alias.name}")
                yield Import(module, node.lineno, targets, f"from {written} import {alias.name}")
        elif (
            isinstance(node, ast.Call)
            and ast.unparse(node.func) in ("importlib.import_module", "import_module", "__import__")
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            yield Import(module, node.lineno, (node.args[0].value,), ast.unparse(node))


def library_imports(root: Path = SRC) -> dict[str, list[Import]]:
    """Module name -> its imports, for every module under ``root``/qrewrite."""
    return {
        module_name(path, root): list(
            imports_of(
                path.read_text(encoding="utf-8"),
                module_name(path, root),
                is_package=path.name == "__init__.py",
            )
        )
        for path in sorted((root / "qrewrite").rglob("*.py"))
    }


def _inside(module: str, prefixes: Iterable[str]) -> bool:
    return any(module == p or module.startswith(f"{p}.") for p in prefixes)


def import_graph(library: dict[str, list[Import]]) -> dict[str, set[str]]:
    """Module -> the library modules it imports (an imported name resolves to the module that
    defines it; lazy imports count: a call can run them)."""
    graph: dict[str, set[str]] = {}
    for module, imports in library.items():
        graph[module] = set()
        for target in (t for i in imports for t in i.targets):
            parts = target.split(".")
            while parts and ".".join(parts) not in library:
                parts.pop()
            if parts and ".".join(parts) != module:
                graph[module].add(".".join(parts))
    return graph


def chain_to(graph: dict[str, set[str]], start: str, prefixes: Iterable[str]) -> list[str]:
    """The shortest chain of imports from ``start`` to a module inside ``prefixes``, or []."""
    previous: dict[str, str | None] = {start: None}
    queue = deque([start])
    while queue:
        module = queue.popleft()
        if module != start and _inside(module, prefixes):
            chain = [module]
            while (before := previous[chain[-1]]) is not None:
                chain.append(before)
            return chain[::-1]
        for nxt in sorted(graph.get(module, ())):
            if nxt not in previous:
                previous[nxt] = module
                queue.append(nxt)
    return []


def kubeflow_violations(imports: Iterable[Import]) -> list[str]:
    return [
        f"{i.where()}: the library knows nothing of Kubeflow (kfp, the components, the pipelines)"
        for i in imports
        if i.reaches(KUBEFLOW)
        and not (i.module == PIPELINE_COMMANDS and i.reaches(["qrewrite_pipelines"]))
    ]


def truth_violations(imports: Iterable[Import]) -> list[str]:
    return [
        f"{i.where()}: {i.module} makes training data and may not see the ground truth "
        f"({', '.join(TRUTH)})"
        for i in imports
        if _inside(i.module, TRUTH_BLIND) and i.reaches(TRUTH)
    ]


def mlflow_violations(imports: Iterable[Import]) -> list[str]:
    return [
        f"{i.where()}: MLflow plumbing belongs in qrewrite.tracking / qrewrite.registry "
        "(log through qrewrite.tracking)"
        for i in imports
        if i.reaches(["mlflow"])
        and not _inside(i.module, MLFLOW_HOMES)
        and i.module not in MLFLOW_TODAY
    ]


def cli_violations(imports: Iterable[Import]) -> list[str]:
    return [
        f"{i.where()}: the library never imports the CLI (the CLI imports the library)"
        for i in imports
        if i.reaches([CLI]) and not _inside(i.module, [CLI])
    ]


RULES = {
    "kubeflow": kubeflow_violations,
    "truth": truth_violations,
    "mlflow": mlflow_violations,
    "cli": cli_violations,
}


@pytest.fixture(scope="module")
def library() -> dict[str, list[Import]]:
    return library_imports()


def _all(library: dict[str, list[Import]]) -> list[Import]:
    return [i for imports in library.values() for i in imports]


def test_the_walker_reads_the_whole_library(library) -> None:
    """Every module is parsed, packages named by their folder, and imports inside functions are
    found (``qrewrite.tracking`` imports mlflow only there)."""
    assert len(library) > 50
    assert {"qrewrite", "qrewrite.tracking", "qrewrite.registry", "qrewrite.cli"} <= set(library)
    assert any(i.reaches(["mlflow"]) for i in library["qrewrite.tracking"])


def test_the_library_knows_nothing_of_kubeflow(library) -> None:
    """Nothing under src/qrewrite/ imports kfp, the components or the pipelines."""
    found = kubeflow_violations(_all(library))
    assert not found, "\n".join(found)


def test_the_steps_that_make_training_data_never_see_the_truth(library) -> None:
    """Mining, labeling, importing and training import nothing of qrewrite.evaluation (truth
    lookup, label evaluation) nor the simulator's ground truth."""
    found = truth_violations(_all(library))
    assert not found, "\n".join(found)


def test_nor_through_another_module(library) -> None:
    """No chain of imports leads from them to the truth either (a helper in another package
    that loads the truth would hand it over)."""
    graph = import_graph(library)
    chains = [
        " -> ".join(chain)
        for module in sorted(library)
        if _inside(module, TRUTH_BLIND) and (chain := chain_to(graph, module, TRUTH))
    ]
    assert not chains, "may not reach the ground truth:\n" + "\n".join(chains)


def test_mlflow_is_imported_only_where_its_plumbing_lives(library) -> None:
    """qrewrite.tracking, qrewrite.registry and today's step modules import mlflow; nothing new."""
    found = mlflow_violations(_all(library))
    assert not found, "\n".join(found)


def test_the_mlflow_allow_list_names_only_modules_that_still_need_it(library) -> None:
    """A module that stopped importing mlflow leaves the allow-list (it only shrinks)."""
    stale = sorted(
        m
        for m in MLFLOW_TODAY
        if m not in library or not any(i.reaches(["mlflow"]) for i in library[m])
    )
    assert not stale, f"no longer import mlflow; remove from MLFLOW_TODAY: {stale}"


def test_the_library_never_imports_the_cli(library) -> None:
    """Only qrewrite.cli imports qrewrite.cli."""
    found = cli_violations(_all(library))
    assert not found, "\n".join(found)


SYNTHETIC = [
    pytest.param(
        "kubeflow",
        "qrewrite.training.sft",
        "def f():\n    from kfp import dsl\n",
        "qrewrite.training.sft:2: `from kfp import dsl`",
        id="kfp-in-a-function",
    ),
    pytest.param(
        "kubeflow",
        "qrewrite.config",
        "import importlib\nimportlib.import_module('qrewrite_pipelines.local')\n",
        "qrewrite.config:2: `importlib.import_module('qrewrite_pipelines.local')`",
        id="pipelines-by-importlib",
    ),
    pytest.param(
        "truth",
        "qrewrite.labeling.label",
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
        "    from qrewrite.evaluation.truth import TruthLookup\n",
        "qrewrite.labeling.label:3: `from qrewrite.evaluation.truth import TruthLookup`",
        id="truth-under-type-checking",
    ),
    pytest.param(
        "truth",
        "qrewrite.mining.mine",
        "from ..market import truth\n",
        "qrewrite.mining.mine:1: `from ..market import truth`",
        id="relative-import-of-a-module",
    ),
    pytest.param(
        "truth",
        "qrewrite.training",
        "from qrewrite import evaluation\n",
        "qrewrite.training:1: `from qrewrite import evaluation`",
        id="package-init",
    ),
    pytest.param(
        "mlflow",
        "qrewrite.serving.new_module",
        "import os\n\n\ndef log():\n    import mlflow.pyfunc\n",
        "qrewrite.serving.new_module:5: `import mlflow.pyfunc`: MLflow plumbing belongs in "
        "qrewrite.tracking / qrewrite.registry",
        id="mlflow-in-a-new-module",
    ),
    pytest.param(
        "cli",
        "qrewrite.serving.export",
        "from .. import cli\n",
        "qrewrite.serving.export:1: `from .. import cli`",
        id="cli-relative",
    ),
]


@pytest.mark.parametrize(("rule", "module", "source", "expected"), SYNTHETIC)
def test_the_checker_reports_a_violation_with_module_line_and_import(
    rule, module, source, expected
) -> None:
    """Each rule catches its violation however it is written, and names where it is."""
    found = RULES[rule](imports_of(source, module, is_package=module == "qrewrite.training"))
    assert len(found) == 1 and found[0].startswith(expected), found


def test_the_chain_finder_follows_imports_through_other_modules() -> None:
    """The transitive check sees a truth import two modules away, through a from-import of a
    name (the test above cannot pass for want of edges)."""
    sources = {
        "qrewrite.training.rewards": "from qrewrite.serving.helper import grade\n",
        "qrewrite.serving.helper": "def grade():\n    from qrewrite.market import truth\n",
        "qrewrite.market.truth": "",
    }
    library = {m: list(imports_of(s, m)) for m, s in sources.items()}
    chain = chain_to(import_graph(library), "qrewrite.training.rewards", TRUTH)
    assert chain == [
        "qrewrite.training.rewards",
        "qrewrite.serving.helper",
        "qrewrite.market.truth",
    ]


def test_the_checker_passes_what_the_rules_allow() -> None:
    """Allowed imports are not reported: a name from qrewrite.tracking is not mlflow, the CLI
    imports the library, the evaluation imports the truth, the registry imports mlflow."""
    allowed = {
        "qrewrite.training.sft": "from qrewrite.tracking import mlflow_run\nimport kfpx\n",
        "qrewrite.cli.main": "from qrewrite.cli.common import run\nimport qrewrite.training\n",
        "qrewrite.evaluation.evaluate": "from qrewrite.evaluation.truth import TruthLookup\n",
        "qrewrite.registry.new_module": "import mlflow\n",
        "qrewrite.labeling.label": "from qrewrite.market.simulate import SynthConfig\n",
    }
    for module, source in allowed.items():
        imports = list(imports_of(source, module))
        assert imports
        for rule, check in RULES.items():
            assert check(imports) == [], (rule, module)
