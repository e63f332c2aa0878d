"""tinytwin external: make pyserial's port listing report the twin's boards.

``tinytwin external`` copies this file into a temporary directory at the
front of the child's ``PYTHONPATH``; Python's :mod:`site` imports it at start
(unless the interpreter runs with ``-S``, ``-I`` or ``-E``). It does exactly
one thing: when the program imports them, it wraps ``comports()`` of pyserial's ``serial.tools.list_ports``
(and of the platform modules behind it, ``list_ports_posix`` /
``list_ports_linux`` / ``list_ports_osx``) so that the listing starts with one
entry per twin board: the board's pseudo-terminal as ``device``, and the USB
vendor/product id, description, manufacturer, product and serial number the
real board's USB-serial bridge reports. The real ports follow (unless the
launcher was asked to hide them). Nothing else of pyserial, nor of the program
run, is touched. The boards are read from the JSON file named by
``$TINYTWIN_EXTERNAL_PORTS``; an entry whose device no longer exists (the twin
has stopped) is left out.

If another ``sitecustomize`` module exists further along ``sys.path`` (a
distribution's or a virtual environment's), it is imported afterwards, so the
program sees the environment it would have seen without us.
"""
import json
import os
import sys

_PORTS_ENV = "TINYTWIN_EXTERNAL_PORTS"
_WRAPPED_MODULES = (
    "serial.tools.list_ports",
    "serial.tools.list_ports_posix",
    "serial.tools.list_ports_linux",
    "serial.tools.list_ports_osx",
)


def _load_config():
    path = os.environ.get(_PORTS_ENV)
    if not path:
        return None
    try:
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)
    except (OSError, ValueError) as exc:
        sys.stderr.write("tinytwin external: cannot read %s (%s); the twin's ports are not listed\n" % (path, exc))
        return None


def _port_info(entry):
    from serial.tools import list_ports_common

    info = list_ports_common.ListPortInfo(entry["device"], skip_link_detection=True)
    for key in ("vid", "pid", "serial_number", "location", "manufacturer", "product", "interface"):
        if entry.get(key) is not None:
            setattr(info, key, entry[key])
    info.apply_usb_info()
    if entry.get("description"):
        info.description = entry["description"]
    return info


def _wrap(original, config):
    entries = list(config.get("ports", []))
    hide_real = bool(config.get("hide_real_ports"))

    def comports(include_links=False, *args, **kwargs):
        ours = [_port_info(e) for e in entries if os.path.exists(e["device"])]
        if hide_real:
            return ours
        ours_real = set(os.path.realpath(p.device) for p in ours)
        real = [p for p in original(include_links, *args, **kwargs) if os.path.realpath(p.device) not in ours_real]
        return ours + real

    comports.__doc__ = original.__doc__
    comports.__wrapped__ = original
    comports.tinytwin_external = True
    return comports


def _patch_module(module, config):
    original = getattr(module, "comports", None)
    if original is not None and not getattr(original, "tinytwin_external", False):
        module.comports = _wrap(original, config)


class _PatchingLoader(object):
    """Runs the real loader, then wraps the module's ``comports``."""

    def __init__(self, loader, config):
        self._loader = loader
        self._config = config

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module):
        self._loader.exec_module(module)
        _patch_module(module, self._config)

    def __getattr__(self, name):  # get_code, get_source, is_package, ... (runpy)
        return getattr(self._loader, name)


class _PortListFinder(object):
    """A ``sys.meta_path`` entry that only acts on pyserial's port-listing
    modules: pyserial is not imported before the program imports it."""

    def __init__(self, config):
        self._config = config

    def find_spec(self, name, path=None, target=None):
        if name not in _WRAPPED_MODULES:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(name, path, target)
            if spec is not None:
                break
        else:
            return None
        if spec.loader is not None and hasattr(spec.loader, "exec_module"):
            spec.loader = _PatchingLoader(spec.loader, self._config)
        return spec


def _install(config):
    for name in _WRAPPED_MODULES:  # already imported (unusual at start-up)
        if name in sys.modules:
            _patch_module(sys.modules[name], config)
    sys.meta_path.insert(0, _PortListFinder(config))


def _chain_next_sitecustomize():
    """Import the ``sitecustomize`` we shadow, if there is one."""
    here = os.path.dirname(os.path.abspath(__file__))
    ours = sys.modules.pop("sitecustomize", None)
    removed = [(i, p) for i, p in enumerate(sys.path) if os.path.abspath(p or os.curdir) == here]
    for i, _ in reversed(removed):
        del sys.path[i]
    try:
        import importlib

        importlib.import_module("sitecustomize")
    except ImportError as exc:
        if getattr(exc, "name", None) != "sitecustomize":
            raise
    finally:
        for i, p in removed:
            sys.path.insert(i, p)
        if "sitecustomize" not in sys.modules and ours is not None:
            sys.modules["sitecustomize"] = ours


_config = _load_config()
if _config is not None:
    _install(_config)
_chain_next_sitecustomize()
