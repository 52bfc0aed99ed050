"""Entry-point plugins: the autoload switch, and loading once, thread-safely, on the first read.

The entry points are faked (``importlib.metadata.entry_points`` is patched), so no
distribution is installed; each test resets the "loaded" flag and works inside a
temporary registry, so the losses its plugins register vanish with it.
"""

from __future__ import annotations

import threading
import time

import pytest
import torch
from torch import Tensor

import lossfn
from lossfn.registry import PluginWarning, Reduction, _plugins, registered, temporary_registry
from lossfn.registry import _registry as registry_module


def plugin_abs_error(logits: Tensor, labels: Tensor, *, reduction: Reduction = "mean") -> Tensor:
    """A toy plugin loss: absolute error."""
    return lossfn.functional.reduce_loss((logits - labels).abs(), reduction, name="plugin_abs_error")


class FakeEntryPoint:
    """What ``entry_points(group=...)`` yields: a name, a value, and ``load()``."""

    def __init__(self, name: str, load, value: str = "fake_plugin.losses") -> None:
        self.name, self.value, self._load = name, value, load
        self.calls = 0

    def load(self):
        self.calls += 1
        return self._load()


def register_abs_error(name: str = "plugin_abs_error"):
    def load():
        lossfn.register_loss(name, ["number"])(plugin_abs_error)

    return load


@pytest.fixture
def fake_plugins(monkeypatch):
    """Install fake entry points (``install(*entries)``): the next registry read loads them."""
    monkeypatch.delenv(_plugins.DISABLE_ENV, raising=False)
    monkeypatch.setattr(registry_module, "_PLUGINS_LOADED", False)
    groups = []

    def entry_points(*, group):
        groups.append(group)
        return list(installed) if group == _plugins.GROUP else []

    installed: list[FakeEntryPoint] = []
    monkeypatch.setattr(_plugins.importlib.metadata, "entry_points", entry_points)

    def install(*entries: FakeEntryPoint) -> list[str]:
        installed.extend(entries)
        return groups

    with temporary_registry():
        yield install


@pytest.mark.parametrize("value", ["1", "true", "YES", "anything"])
def test_the_switch_skips_every_entry_point(fake_plugins, monkeypatch, value):
    entry = FakeEntryPoint("toy", register_abs_error())
    groups = fake_plugins(entry)
    monkeypatch.setenv(_plugins.DISABLE_ENV, value)  # after lossfn's import: read at the first read
    names = registered()
    assert entry.calls == 0 and groups == []
    assert "plugin_abs_error" not in names
    assert "mean_squared_error" in names  # lossfn's own losses are not plugins
    monkeypatch.delenv(_plugins.DISABLE_ENV)
    assert "plugin_abs_error" not in registered()  # decided once, at the first read


@pytest.mark.parametrize("value", [None, "", "0", "false", "No"])
def test_without_the_switch_each_entry_point_loads_once(fake_plugins, monkeypatch, value):
    if value is not None:
        monkeypatch.setenv(_plugins.DISABLE_ENV, value)
    entry = FakeEntryPoint("toy", register_abs_error())
    fake_plugins(entry)
    assert "plugin_abs_error" in registered()
    spec = lossfn.get_loss("plugin_abs_error")
    registry_module.generation()  # every read path goes through the one load
    assert entry.calls == 1 and registry_module._PLUGINS_LOADED
    module = lossfn.build({"type": "plugin_abs_error"})
    assert module(torch.tensor([1.0, -3.0]), torch.tensor([0.0, 0.0])).item() == 2.0
    assert spec.fn.__name__ == "plugin_abs_error"


def test_a_concurrent_reader_waits_for_the_plugins(fake_plugins):
    started = threading.Event()

    def slow_load():
        started.set()
        time.sleep(0.2)
        lossfn.register_loss("plugin_abs_error", ["number"])(plugin_abs_error)

    entry = FakeEntryPoint("slow", slow_load)
    fake_plugins(entry)
    seen: dict[str, bool] = {}
    errors: list[BaseException] = []

    def read(who: str) -> None:
        try:
            seen[who] = "plugin_abs_error" in registered()
        except BaseException as exc:  # reported below, not lost in the thread
            errors.append(exc)

    first = threading.Thread(target=read, args=("first",))
    first.start()
    assert started.wait(5)  # the first reader is inside the plugin's import
    second = threading.Thread(target=read, args=("second",))
    second.start()
    first.join(5)
    second.join(5)
    assert not first.is_alive() and not second.is_alive()
    assert not errors
    assert seen == {"first": True, "second": True}
    assert entry.calls == 1


def test_a_plugin_that_reads_the_registry_does_not_deadlock(fake_plugins):
    seen = []

    def load():
        seen.append("mean_squared_error" in registered())  # re-enters _load_plugins in this thread
        lossfn.register_loss("plugin_abs_error", ["number"])(plugin_abs_error)
        seen.append(lossfn.get_loss("plugin_abs_error").name)

    entry = FakeEntryPoint("reader", load)
    fake_plugins(entry)
    done = threading.Event()
    result = {}

    def read():
        result["names"] = registered()
        done.set()

    thread = threading.Thread(target=read, daemon=True)
    thread.start()
    assert done.wait(5), "loading a plugin that reads the registry deadlocked"
    assert seen == [True, "plugin_abs_error"] and "plugin_abs_error" in result["names"]
    assert entry.calls == 1


def test_a_broken_plugin_warns_and_the_others_still_load(fake_plugins):
    def broken():
        raise RuntimeError("boom")

    bad = FakeEntryPoint("broken_toy", broken, value="broken_pkg.losses")
    good = FakeEntryPoint("toy", register_abs_error())
    fake_plugins(bad, good)
    with pytest.warns(PluginWarning, match=r"'broken_toy' \(broken_pkg.losses\) failed to load: boom"):
        names = registered()
    assert "plugin_abs_error" in names and "mean_squared_error" in names
    assert bad.calls == 1 and good.calls == 1
    registered()  # no second attempt, no second warning (filterwarnings=error would raise)
    assert bad.calls == 1
