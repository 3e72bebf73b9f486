"""The architecture, asserted (ARCHITECTURE.md): data flows one way and each fact has one home.

These read the source (AST), so a shortcut that works today but bends the shape fails here:
the core importing an output, a module reaching into the bus master's registry, a second
copy of the service step, a function or a config file growing past what a reader can hold.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from twcmaster.settings import SettingsStore

PACKAGE = Path(__file__).resolve().parent.parent / "twcmaster"

# What the sans-I/O core may not depend on: outputs, the asyncio edges, I/O libraries.
CORE_FORBIDDEN_IMPORTS = (
    "twcmaster.outputs",
    "twcmaster.daemon",
    "twcmaster.transport",
    "twcmaster.sources.runner",
    "twcmaster.vehicles",
    "twcmaster.logs",
    "asyncio",
    "serial",
    "socket",
    "threading",
    "logging",
    "structlog",
    "requests",
    "paho",
)
# The bus master's API as the core uses it (everything else of it is its own business).
BUS_MASTER_API = {
    "start",
    "stop",
    "stopped",
    "receive",
    "poll",
    "next_wakeup_s",
    "awaiting_reply",
    "reply_window_end_s",
    "set_offer",
    "slave_views",
    "pause_heartbeats",  # chargeStopMode 2
    "send_relay_command",  # chargeStopMode 3
}
MAX_FUNCTION_LINES = 60
MAX_CONFIG_FILE_LINES = 450


def modules(*parts: str) -> list[Path]:
    base = PACKAGE.joinpath(*parts)
    return sorted(base.rglob("*.py")) if base.is_dir() else [base]


def parse(path: Path) -> ast.Module:
    return ast.parse(path.read_text(), filename=str(path))


def imported_modules(tree: ast.Module, path: Path) -> set[str]:
    """Every module imported anywhere in the file (TYPE_CHECKING blocks included)."""
    names: set[str] = set()
    package = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts[:-1])
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{parent}.{base}" if base else parent
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return names


def forbidden(name: str) -> bool:
    return any(name == bad or name.startswith(bad + ".") for bad in CORE_FORBIDDEN_IMPORTS)


@pytest.mark.parametrize(
    "path", modules("core.py") + modules("control") + modules("events.py"), ids=str
)
def test_the_core_and_control_import_no_output_edge_or_io(path):
    names = imported_modules(parse(path), path)
    assert not sorted(filter(forbidden, names)), path


def test_nothing_outside_protocol_mutates_bus_master_state():
    """Outside ``protocol/``, the bus master is driven through its methods only: nothing
    assigns to, deletes from or calls a mutating method on its attributes or registry."""
    offenders = []
    for path in modules():
        if "protocol" in path.relative_to(PACKAGE).parts:
            continue
        for node in ast.walk(parse(path)):
            for changed in _changed_inside(node):
                if _through_master(changed):
                    offenders.append(f"{path.name}:{node.lineno}: {ast.unparse(changed)}")
    assert not offenders


MUTATING_METHODS = {"pop", "clear", "update", "append", "setdefault", "popitem", "remove"}


def _changed_inside(node: ast.AST) -> list[ast.expr]:
    """The objects whose contents ``node`` changes: ``a.b`` for ``a.b.c = 1``, ``a.b[k] = 1``,
    ``del a.b[k]`` and ``a.b.pop()`` (rebinding a plain name or ``self.x`` changes ``self``)."""
    if isinstance(node, ast.Assign):
        targets = node.targets
    elif isinstance(node, ast.AugAssign | ast.AnnAssign | ast.Delete):
        targets = node.targets if isinstance(node, ast.Delete) else [node.target]
    elif (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr in MUTATING_METHODS
    ):
        return [node.func.value]
    else:
        return []
    return [t.value for t in targets if isinstance(t, ast.Attribute | ast.Subscript)]


def test_the_mutation_check_catches_a_reach_in():
    def flagged(code: str) -> bool:
        node = ast.parse(code).body[0]
        node = node.value if isinstance(node, ast.Expr) else node
        return any(_through_master(c) for c in _changed_inside(node))

    for code in (
        "core.master.slaves[1].offer_amps = 5",
        "del self.master.slaves[twcid]",
        "self.core.master.slaves.pop(twcid)",
        "core.master._burst_left += 1",
    ):
        assert flagged(code), code
    for code in ("self.master = BusMaster()", "self.slaves.append(x)", "x = core.master.slaves"):
        assert not flagged(code), code


def _through_master(node: ast.expr) -> bool:
    """Whether the object is a bus master or lies inside one (``x.master``, ``x.master.y``)."""
    while isinstance(node, ast.Attribute | ast.Subscript):
        if isinstance(node, ast.Attribute) and node.attr == "master":
            return True
        node = node.value
    return False


def test_the_core_uses_only_the_bus_masters_api():
    used = set()
    for node in ast.walk(parse(PACKAGE / "core.py")):
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Attribute)
            and node.value.attr == "master"
        ):
            used.add(node.attr)
    assert used <= BUS_MASTER_API, used - BUS_MASTER_API


@pytest.mark.parametrize("path", ["daemon.py", "simulate.py"])
def test_daemon_and_simulator_drive_the_one_service_step(path):
    """Both call ``core.service`` and neither the lower-level receive/poll: one step."""
    calls = set()
    for node in ast.walk(parse(PACKAGE / path)):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            owner = node.func.value
            if isinstance(owner, ast.Attribute) and owner.attr == "core":
                calls.add(node.func.attr)
    assert "service" in calls
    assert not calls & {"receive", "poll", "next_wakeup_s"}, calls


@pytest.mark.parametrize("path", modules("outputs") + modules("vehicles"), ids=str)
def test_outputs_read_events_and_the_snapshot_not_the_core(path):
    """An output imports no part of the core's machinery at run time (types only)."""
    tree = parse(path)
    runtime = set()
    for node in tree.body:  # module level, outside ``if TYPE_CHECKING:``
        if isinstance(node, ast.Import | ast.ImportFrom):
            runtime |= imported_modules(ast.Module(body=[node], type_ignores=[]), path)
    machinery = ("twcmaster.core", "twcmaster.control", "twcmaster.protocol.master")
    assert not [n for n in runtime if n.startswith(machinery)], path


def _functions(path: Path) -> list[tuple[str, int]]:
    return [
        (f"{path.name}:{node.lineno} {node.name}", node.end_lineno - node.lineno + 1)
        for node in ast.walk(parse(path))
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
    ]


@pytest.mark.parametrize("path", modules("core.py") + modules("control"), ids=str)
def test_no_long_functions_in_the_core_and_control(path):
    long = [(name, n) for name, n in _functions(path) if n > MAX_FUNCTION_LINES]
    assert not long


@pytest.mark.parametrize("path", modules("config"), ids=str)
def test_config_files_stay_small(path):
    assert len(path.read_text().splitlines()) <= MAX_CONFIG_FILE_LINES


def test_one_home_for_the_line_speed_and_the_charging_threshold():
    """9600 baud and "charging from 1 A" are written once (protocol/), imported elsewhere.
    (An energy source's own serial line, a DSMR 2.2/3 meter's 9600 7E1, is not the TWC bus.)"""
    homes = {"9600": [], "CHARGING_AMPS = ": []}
    for path in modules():
        if path.parent.name == "sources":
            continue
        text = path.read_text()
        for fact in homes:
            for line in text.splitlines():
                code = line.split("#", 1)[0]
                if fact in code and "=" in code and not code.lstrip().startswith(('"', "'")):
                    homes[fact].append(f"{path.relative_to(PACKAGE)}: {line.strip()}")
    assert homes["9600"] == ["protocol/codec.py: BAUD = 9600  # every TWC talks 9600 8N1 (§1)"]
    assert homes["CHARGING_AMPS = "] == [
        "protocol/master.py: CHARGING_AMPS = 1.0  # a car drawing at least this is charging "
        "(§6.2, §5.4 VIN polling)"
    ]


@pytest.mark.parametrize(
    "path",
    [p for p in modules("outputs") + modules("remote") if p.name != "commands.py"],
    ids=str,
)
def test_remote_edges_change_settings_only_through_remote_control(path):
    """MQTT control and the HTTP API (the web page posts to it) parse and call ``RemoteControl``:
    none imports the settings store or calls one of its setters, so every change is
    validated and saved one way."""
    tree = parse(path)
    assert "twcmaster.settings.SettingsStore" not in imported_modules(tree, path)
    setters = {
        name for name in dir(SettingsStore) if name.startswith(("set_", "charge_now", "cancel"))
    } | {"delete_consumption_offset", "save", "_update"}
    called = {
        node.func.attr
        for node in ast.walk(tree)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
        and isinstance(node.func.value, ast.Attribute) and node.func.value.attr == "store"
    }  # fmt: skip
    assert not called & setters, path
