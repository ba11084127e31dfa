"""The import layers of the package: the core does not depend on the data pipelines or
the export, the export does not depend on the pipelines.

Layers, lowest first: ``feseq_tf.raw_format`` (standard library only) <- the
``feseq_tf`` core <- ``pipelines`` and ``export`` <- the entry points
(:data:`ENTRY_POINTS`), which may use everything. Every import counts, also one inside
a function and ``importlib.import_module("...")`` with a literal name.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Command-line programs over the whole product: they prepare data, train and export.
ENTRY_POINTS = ("feseq_tf/train.py", "feseq_tf/benchmark.py", "feseq_tf/tune/cli.py")


def _sources(package: str) -> list[str]:
    """Paths (relative to the repository, '/'-separated) of a package's modules."""
    paths = []
    for directory, dirs, files in os.walk(os.path.join(ROOT, package)):
        dirs[:] = sorted(d for d in dirs if not d.startswith((".", "__pycache__")))
        paths += [
            os.path.relpath(os.path.join(directory, f), ROOT).replace(os.sep, "/")
            for f in sorted(files)
            if f.endswith(".py")
        ]
    return paths


def _module_name(path: str) -> str:
    parts = path[: -len(".py")].split("/")
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: str) -> set[str]:
    """Absolute names of every module a source file imports, anywhere in it."""
    with open(os.path.join(ROOT, path), encoding="utf-8") as fh:
        tree = ast.parse(fh.read(), filename=path)
    package = _module_name(path).split(".")
    if not path.endswith("__init__.py"):
        package = package[:-1]
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            module = ".".join(base + ([node.module] if node.module else []))
            names.add(module)
            names.update(f"{module}.{alias.name}" for alias in node.names)
        elif (
            isinstance(node, ast.Call)
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
            and (
                (isinstance(node.func, ast.Name) and node.func.id == "__import__")
                or (isinstance(node.func, ast.Attribute) and node.func.attr == "import_module")
            )
        ):
            names.add(node.args[0].value)
    return names


def _violations(paths: list[str], forbidden: tuple[str, ...]) -> dict[str, list[str]]:
    found = {}
    for path in paths:
        bad = sorted(m for m in imported_modules(path) if m.split(".")[0] in forbidden)
        if bad:
            found[path] = bad
    return found


def test_the_entry_points_are_command_line_programs():
    for path in ENTRY_POINTS:
        with open(os.path.join(ROOT, path), encoding="utf-8") as fh:
            tree = ast.parse(fh.read())
        functions = {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}
        assert "main" in functions, f"{path} is listed as an entry point but has no main()"


# The package's front door offers ``export_run`` by name and imports it only when a user
# asks for it (``feseq_tf.__getattr__``); the core itself never does (checked below).
FRONT_DOOR = "feseq_tf/__init__.py"


def _loaded_by(statement: str, packages: tuple[str, ...]) -> list[str]:
    """The modules of ``packages`` that a fresh interpreter has loaded after ``statement``."""
    code = (
        f"import sys; {statement}; "
        f"print(sorted(m for m in sys.modules if m.split('.')[0] in {packages!r}))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    return ast.literal_eval(out.stdout.strip())


def test_the_core_imports_neither_pipelines_nor_export():
    core = [p for p in _sources("feseq_tf") if p not in ENTRY_POINTS + (FRONT_DOOR,)]
    assert "feseq_tf/schema.py" in core and "feseq_tf/yardstick.py" in core
    assert _violations(core, ("pipelines", "export")) == {}
    # the front door names the export job's function but loads it on first use only
    assert _violations([FRONT_DOOR], ("pipelines",)) == {}
    assert _loaded_by("import feseq_tf; feseq_tf.ModelConfig", ("export", "pipelines")) == []


def test_export_does_not_import_the_pipelines():
    paths = _sources("export")
    assert "export/savedmodel.py" in paths
    assert _violations(paths, ("pipelines",)) == {}


def test_raw_format_uses_the_standard_library_only():
    imported = {m.split(".")[0] for m in imported_modules("feseq_tf/raw_format.py")}
    assert imported - set(sys.stdlib_module_names) - {"__future__"} == set()


def test_the_client_needs_only_the_standard_library_and_the_raw_format():
    ours = {
        m
        for m in imported_modules("export/client.py")
        if m.split(".")[0] not in sys.stdlib_module_names and m != "__future__"
    }
    # The gRPC client (grpcio, TensorFlow's protos) is imported only for --grpc.
    ours -= {"export.grpc_client", "export.grpc_client.GrpcServingClient"}
    # and the command-line error handling (feseq_tf.cli), which loads no third-party
    # package either: the import below checks what the client loads
    allowed = ("feseq_tf.raw_format", "feseq_tf.cli")
    assert {m for m in ours if m != "feseq_tf" and not m.startswith(allowed)} == set()
    third_party = ("tensorflow", "numpy", "pandas", "pyarrow", "grpc")
    assert _loaded_by("import export.client", third_party) == []


@pytest.mark.parametrize(
    "source, expected",
    [
        ("import pipelines.generic", {"pipelines.generic"}),
        ("def f():\n    from pipelines import eleme", {"pipelines", "pipelines.eleme"}),
        ("from . import attention", {"feseq_tf.layers", "feseq_tf.layers.attention"}),
        ("from ..schema import PAD_ID", {"feseq_tf.schema", "feseq_tf.schema.PAD_ID"}),
        (
            "import importlib\nimportlib.import_module('export.serve')",
            {"importlib", "export.serve"},
        ),
    ],
    ids=["absolute", "in_a_function", "relative", "relative_parent", "import_module"],
)
def test_imports_are_found_wherever_they_are_written(tmp_path, monkeypatch, source, expected):
    package = tmp_path / "feseq_tf" / "layers"
    package.mkdir(parents=True)
    (package / "probe.py").write_text(source)
    monkeypatch.setattr(sys.modules[__name__], "ROOT", str(tmp_path))
    assert imported_modules("feseq_tf/layers/probe.py") == expected
