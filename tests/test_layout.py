"""The package's layout is a rule, not a habit: every import points down the layers, and every
module of the method and of the layer folders has its own test file (docs/architecture.md)."""
import ast
from pathlib import Path

import lomix_core

PACKAGE = Path(lomix_core.__file__).parent
TESTS = Path(__file__).parent
# The method is every module at the package's top level; the other layers are its folders.
METHOD = {p.stem for p in PACKAGE.glob("*.py")} - {"__init__", "__main__"}
# integrations/ (nnU-Net, MONAI) sit beside the teaching layer: they use the method and the studies.
RANK = {"foundations": 0, "method": 1, "data": 2, "models": 2, "pipeline": 3, "studies": 4, "teaching": 5,
        "integrations": 5, "entry": 6}


def layer_of(module: str) -> str:
    """``lomix_core.pipeline.training`` → ``pipeline``; ``lomix_core.fusion`` → ``method``."""
    parts = module.split(".")[1:]
    if not parts or parts[0] in ("__init__", "__main__"):
        return "entry"
    return "method" if parts[0] in METHOD else parts[0]


def modules():
    for path in sorted(PACKAGE.rglob("*.py")):
        if "notebooks" in path.parts:
            continue
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        yield path, ".".join(parts[:-1] if parts[-1] == "__init__" else parts), path.name == "__init__.py"


def imported(path: Path, module: str, is_package: bool):
    """The kit modules that ``path`` imports, as absolute names."""
    here = module.split(".") if is_package else module.split(".")[:-1]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level:
            base = here[: len(here) - node.level + 1] + (node.module.split(".") if node.module else [])
            yield from (".".join(base + [a.name]) if not node.module else ".".join(base) for a in node.names)
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("lomix_core"):
            yield node.module
        elif isinstance(node, ast.Import):
            yield from (a.name for a in node.names if a.name.startswith("lomix_core"))


def upward_imports(path: Path, module: str, is_package: bool) -> list[str]:
    return [f"{module} ({layer_of(module)}) imports {target} ({layer_of(target)})"
            for target in imported(path, module, is_package) if RANK[layer_of(target)] > RANK[layer_of(module)]]


def test_every_import_points_down_the_layers():
    upward = [line for path, module, is_package in modules() if layer_of(module) != "entry"  # the package
              for line in upward_imports(path, module, is_package)]                           # face and the CLI
    assert upward == [], "imports that run back up:\n" + "\n".join(upward)


def test_the_check_sees_an_upward_import(tmp_path):
    source = tmp_path / "x.py"
    source.write_text("from ..teaching import viz\nfrom .config import TrainConfig\nimport lomix_core.studies.runs\n")
    assert upward_imports(source, "lomix_core.pipeline.x", False) == [
        "lomix_core.pipeline.x (pipeline) imports lomix_core.teaching (teaching)",
        "lomix_core.pipeline.x (pipeline) imports lomix_core.studies.runs (studies)"]


def test_every_module_of_the_method_and_the_layer_folders_has_its_test_file():
    expected = {"__main__": "test_cli.py"}
    missing = []
    for path, module, is_package in modules():
        layer = layer_of(module)
        if is_package or layer not in ("foundations", "method", "pipeline", "studies", "teaching", "entry"):
            continue  # data/ and models/ are tested per dataset and per network: test_data_<name>, test_*models
        name = module.rsplit(".", 1)[-1]
        test_file = expected.get(name, f"test_{name}.py")
        if not (TESTS / test_file).is_file():
            missing.append(f"{module}: no tests/{test_file}")
    assert missing == []
