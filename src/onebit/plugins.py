"""Loading user modules that register methods or models.

``ONEBIT_PLUGINS`` (or ``onebit --plugins``) is a comma-separated list of module
names or ``.py`` files; each is imported once, so its ``register_method`` /
``register_model`` calls run before any name is looked up. The pipeline passes
its ``plugins`` setting this way to every ``onebit`` command it runs.

Installed packages register without being named: every entry point of the group
``onebit.methods`` (in a package's ``pyproject.toml``:
``[project.entry-points."onebit.methods"] my_method = "my_package.methods"``) is
imported first.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from pathlib import Path

from .errors import PluginError

_loaded: set[str] = set()
#: the plugin files imported so far (a command must not write over them)
LOADED_FILES: set[Path] = set()


ENTRY_POINT_GROUP = "onebit.methods"


def load_entry_points() -> list[str]:
    """Import the modules of the installed packages' ``onebit.methods`` entry points."""
    from importlib.metadata import entry_points

    names = []
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        key = f"entry point {ep.name} = {ep.value}"
        if key not in _loaded:
            try:
                ep.load()
            except Exception as e:  # a broken third-party package: say which
                raise PluginError(
                    f"plugin {key} (group {ENTRY_POINT_GROUP}) failed to load: {type(e).__name__}: {e}"
                ) from None
            _loaded.add(key)
        names.append(key)
    return names


def load_plugins(spec: "str | list[str] | None" = None) -> list[str]:
    load_entry_points()
    if spec is None:
        spec = os.environ.get("ONEBIT_PLUGINS", "")
    items = [s.strip() for s in (spec.split(",") if isinstance(spec, str) else spec) if s.strip()]
    for item in items:
        if item in _loaded:
            continue
        try:
            if item.endswith(".py"):
                path = Path(item).resolve()
                if not path.is_file():
                    raise PluginError(f"plugin file {item} does not exist")
                name = f"onebit_plugin_{path.stem}"
                mod_spec = importlib.util.spec_from_file_location(name, path)
                module = importlib.util.module_from_spec(mod_spec)
                sys.modules[name] = module
                mod_spec.loader.exec_module(module)
                LOADED_FILES.add(path)
            else:
                importlib.import_module(item)
        except PluginError:
            raise
        except ModuleNotFoundError as e:
            raise PluginError(f"plugin module {item!r} cannot be imported ({e})") from None
        except (Exception, SystemExit) as e:  # the plugin's own code failed (or exited): say which plugin
            raise PluginError(
                f"plugin {item} failed while loading ({type(e).__name__}: {e}); fix it or "
                "leave it out of --plugins / ONEBIT_PLUGINS / the pipeline's plugins"
            ) from None
        _loaded.add(item)
    return items
