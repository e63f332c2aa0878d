"""tinytwin external: make pyserial's port listing report the twin's boards.

``tinytwin external`` copies this file into a temporary directory at the
front of the child's ``PYTHONPATH``; Python's :mod:`site` imports it at start
(unless the interpreter runs with ``-S``, ``-I`` or ``-E``). It does two
things, each only when the program imports the module concerned:

* it wraps ``comports()`` of pyserial's ``serial.tools.list_ports``
  (and of the platform modules behind it, ``list_ports_posix`` /
  ``list_ports_linux`` / ``list_ports_osx``) so that the listing starts with
  one entry per twin board: the board's pseudo-terminal as ``device``, and the
  USB vendor/product id, description, manufacturer, product and serial number
  the real board's USB-serial bridge reports. The real ports follow (unless
  the launcher was asked to hide them);
* when the twin has USB-only instruments (a Joulescope JS220), it wraps
  pyusb's ``usb.core.find`` so that a search that matches them also yields a
  stand-in device object with their ``idVendor``/``idProduct`` (the only
  attributes the mlcommons runner reads), after the real devices (with
  ``hide_real_ports``, instead of them: the wrap is then made even when the
  twin has no USB instrument, so that a real JS220 on the host is not found).
  If pyusb has no backend (libusb missing), such a search yields the twin's
  devices alone and says so once on stderr.

Nothing else of pyserial, pyusb, nor of the program run, is touched. The
boards are read from the JSON file named by ``$TINYTWIN_EXTERNAL_PORTS``, again
at every listing (a board unplugged and plugged in again on a running twin
comes back on a new pseudo-terminal); an entry whose device no longer exists
(the twin has stopped, the board is unplugged) is left out.

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
    "usb.core",
)


def _load_config(quiet=False):
    path = os.environ.get(_PORTS_ENV)
    if not path:
        return None
    try:
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)
    except (OSError, ValueError) as exc:
        if not quiet:
            sys.stderr.write("tinytwin external: cannot read %s (%s); the twin's ports are not listed\n" % (path, exc))
        return None


def _current(config):
    """The boards as ports.json says now (the launcher rewrites it when a
    board is replugged), else as it said at start."""
    return _load_config(quiet=True) or config


def _mark_listed():
    """Leave ``listed`` beside ports.json: the launcher then knows the program
    looked for ports through us (if it fails without, the cause is elsewhere)."""
    path = os.environ.get(_PORTS_ENV)
    if path:
        try:
            open(os.path.join(os.path.dirname(path), "listed"), "a").close()
        except OSError:
            pass


def _port_info(entry):
    from serial.tools import list_ports_common

    try:
        info = list_ports_common.ListPortInfo(entry["device"], skip_link_detection=True)
    except TypeError:  # pyserial before 3.5 (e.g. Ubuntu 20.04's 3.4) has no skip_link_detection
        info = list_ports_common.ListPortInfo(entry["device"])
    for key in ("vid", "pid", "serial_number", "location", "manufacturer", "product", "interface"):
        if entry.get(key) is not None:
            setattr(info, key, entry[key])
    info.apply_usb_info()
    if entry.get("description"):
        info.description = entry["description"]
    return info


def _wrap(original, config):
    hide_real = bool(config.get("hide_real_ports"))

    def comports(include_links=False, *args, **kwargs):
        _mark_listed()
        entries = list(_current(config).get("ports", []))
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


class _UsbDevice(object):
    """What pyusb's ``find`` yields for a twin instrument: its USB ids (the
    attributes a runner matches on) and a readable name."""

    def __init__(self, entry):
        self.idVendor = int(entry["vid"])
        self.idProduct = int(entry["pid"])
        self.serial_number = entry.get("serial_number")
        self.manufacturer = entry.get("manufacturer")
        self.product = entry.get("product")
        self.bus = None
        self.address = None
        self.tinytwin = True

    def __repr__(self):
        return "<tinytwin %s %04X:%04X (the twin's, not a USB device)>" % (self.product, self.idVendor, self.idProduct)


def _matches(dev, kwargs):
    for key, value in kwargs.items():
        if key in ("find_all", "backend", "custom_match"):
            continue
        if getattr(dev, key, object()) != value:
            return False
    match = kwargs.get("custom_match")
    return match is None or bool(match(dev))


_warned_backend = []


def _wrap_find(original, config):
    hide_real = bool(config.get("hide_real_ports"))

    def find(find_all=False, backend=None, custom_match=None, **args):
        ours = [_UsbDevice(e) for e in _current(config).get("usb_devices", []) if os.path.exists(e.get("socket", ""))]
        ours = [d for d in ours if _matches(d, dict(args, custom_match=custom_match))]
        if hide_real:  # the host's own USB devices (a real JS220) are not offered
            return iter(ours) if find_all else (ours[0] if ours else None)
        try:
            real = original(find_all=find_all, backend=backend, custom_match=custom_match, **args)
        except Exception as exc:
            if not ours or type(exc).__name__ != "NoBackendError":
                raise
            if not _warned_backend:
                _warned_backend.append(exc)
                sys.stderr.write("tinytwin external: pyusb has no backend (%s); listing only the twin's USB "
                                 "instruments\n" % (exc,))
            real = iter(()) if find_all else None
        if find_all:
            return _chain(real, ours)
        return real if real is not None else (ours[0] if ours else None)

    find.__doc__ = original.__doc__
    find.__wrapped__ = original
    find.tinytwin_external = True
    return find


def _chain(real, ours):
    for dev in real:
        yield dev
    for dev in ours:
        yield dev


def _patch_module(module, config):
    if module.__name__ == "usb.core":
        original = getattr(module, "find", None)
        wanted = config.get("usb_devices") or config.get("hide_real_ports")
        if wanted and original is not None and not getattr(original, "tinytwin_external", False):
            module.find = _wrap_find(original, config)
        return
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
