"""One configuration of a twin, and the one set of options that fills it.

:class:`TwinConfig` says which board to simulate and how: the model, where the
models are, the engine's backend, the I/O profile of a model of your own, the
speed, the DUT's timer at reset, the timing and power profiles, the clock and
the host-baud policy. Everything that builds a twin takes one:

* :func:`emulator.benches.dut.build_dut_bench` (``tinytwin dut``, ``tinytwin://``),
* :func:`emulator.benches.rig.build_rig` (``tinytwin rig``),
* :func:`emulator.benches.external.open_bench` / ``run_external`` (``tinytwin external``).

It builds what those need itself (:meth:`TwinConfig.engine`,
:meth:`TwinConfig.timing`, :meth:`TwinConfig.power_model`), so the option list
lives here only. The command-line front ends get their options from
:func:`twin_options`, and the ``tinytwin://`` URL spells the same options
with underscores (:data:`URL_OPTIONS`, :meth:`TwinConfig.from_url`).
"""
from __future__ import annotations

import dataclasses
import functools
import inspect
import math
import os
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

from .errors import ConfigError
from .models.store import MODELS_DIR_HELP
from .sim import Speed

#: the options of ``tinytwin://<model>?...``: the command line's names with
#: ``_`` for ``-``, and the TwinConfig field each one sets. ``instance`` (a
#: name under which the URL handler keeps the twin running between openings)
#: is the handler's own.
URL_OPTIONS: dict[str, str] = {
    "models_dir": "models_dir",
    "backend": "backend",
    "io_profile": "io_profile",
    "speed": "speed",
    "baud": "baud",
    "energy": "energy_mode",
    "timer_start_us": "timer_start_us",
    "profile": "timing_profile",
    "clock_mhz": "clock_mhz",
    "ignore_host_baud": "honour_host_baud",
    "firmware_variant": "firmware_variant",
}
URL_HANDLER_OPTIONS = ("instance",)

_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


def _bad(option: str, message: str) -> ConfigError:
    exc = ConfigError(message)
    exc.option = option  # the command line's spelling, for the CLI's error
    return exc


@dataclass(frozen=True)
class TwinConfig:
    """What twin to build (see the module docstring).

    ``speed`` may be given as text (``"fast"``, ``"realtime"``, ``"10"``) or a
    factor; it is stored parsed (:class:`emulator.sim.Speed`). The default is
    ``fast``, as tests and in-process use want; the ``dut`` and ``rig``
    commands default to ``realtime``. Bad values raise :class:`ConfigError`.
    """

    model: str
    models_dir: Optional[Path] = None
    backend: str = "tflm"
    io_profile: Optional[str] = None
    speed: Speed = Speed(math.inf)
    #: the DUT's UART baud (None: the firmware's own)
    baud: Optional[int] = None
    #: the firmware built for energy mode (the rig always uses it)
    energy_mode: bool = False
    timer_start_us: int = 0
    #: kernel (timing) profile JSON from ``tinytwin calibrate``; None: the reference board's
    timing_profile: Optional[Path] = None
    clock_mhz: Optional[float] = None
    #: power profile JSON from ``tinytwin calibrate --energy``; None: the reference board's
    power_profile: Optional[Path] = None
    #: garble bytes when the host's baud differs from the device's, as a UART does
    honour_host_baud: bool = True
    #: the DUT firmware: "reference", or one of the variants with a porting
    #: mistake (:data:`emulator.dut.core.VARIANTS`), opt-in, for tinytwin conform
    firmware_variant: str = "reference"
    #: sww01: the directory the H573 interface board's SD card holds (the WAV
    #: files ``play`` plays; ``ls`` lists it)
    sd_card: Optional[Path] = None

    def __post_init__(self) -> None:
        set_ = functools.partial(object.__setattr__, self)
        model = os.fspath(self.model) if self.model is not None else ""
        if not str(model).strip():
            raise _bad("model", "no model given: use kws01, vww01, ic01 or ad01, or a path to your own int8 .tflite")
        set_("model", str(model))
        try:
            set_("speed", Speed.parse(self.speed))
        except ValueError as exc:
            raise _bad("speed", str(exc)) from None
        for name in ("models_dir", "timing_profile", "power_profile", "sd_card"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, Path):
                set_(name, Path(os.fspath(value)).expanduser() if str(value) else None)
        if self.baud is not None and not (isinstance(self.baud, int) and self.baud > 0):
            raise _bad("baud", f"baud must be a positive whole number, got {self.baud!r}")
        if not 0 <= int(self.timer_start_us) < 2**32:
            raise _bad("timer_start_us", f"timer_start_us must be within 0..4294967295 (a 32-bit µs timer), got {self.timer_start_us}")
        if self.clock_mhz is not None and not (math.isfinite(self.clock_mhz) and self.clock_mhz > 0):
            raise _bad("clock_mhz", f"clock_mhz must be a positive number of MHz, got {self.clock_mhz}")
        from .dut.core import VARIANTS

        if self.firmware_variant not in VARIANTS:
            raise _bad("firmware_variant", f"unknown firmware variant {self.firmware_variant!r}: choose one of "
                                           f"{', '.join(VARIANTS)}")

    # -- what the benches build from it ------------------------------------------------------
    def replace(self, **changes: Any) -> "TwinConfig":
        """A copy with ``changes`` (validated like the original)."""
        return dataclasses.replace(self, **changes)

    def engine(self):
        """The model engine (:func:`emulator.models.open_engine`); raises
        :class:`emulator.models.ModelError` naming the fix."""
        from .models.engine import open_engine

        return open_engine(self.model, models_dir=self.models_dir, backend=self.backend, profile=self.io_profile)

    def timing(self, engine):
        """The DUT's timing for ``engine``'s model from the cycle model, with
        this configuration's timing profile and clock."""
        from .dut.timing import timing_for

        return timing_for(
            engine.profile.name,
            model_path=getattr(engine, "model_path", None),
            profile=self.timing_profile,
            clock_mhz=self.clock_mhz,
            engine=engine,
        )

    def power_model(self):
        """The DUT's power model from ``power_profile`` (None: the EMON's
        default, fitted to the reference board)."""
        if self.power_profile is None:
            return None
        from .power.model import PowerModel

        try:
            return PowerModel.load(self.power_profile)
        except (OSError, ValueError, KeyError) as exc:
            raise _bad(
                "power_profile",
                f"cannot use the power profile {self.power_profile}: {exc}; give a JSON written by "
                "`tinytwin calibrate --energy ... --power-out FILE`",
            ) from None

    # -- the tinytwin:// URL ----------------------------------------------------------------
    @classmethod
    def from_url(cls, url: str, **defaults: Any) -> tuple["TwinConfig", dict[str, str]]:
        """``tinytwin://<model>?<options>`` -> the configuration and the URL
        handler's own options (``instance``). Unknown options are an error
        that lists the valid ones, as pyserial's own URL handlers do."""
        parts = urllib.parse.urlsplit(url)
        if parts.scheme != "tinytwin":
            raise ConfigError(f"expected a URL of the form tinytwin://<model>[?option=value&...], got {url!r}")
        # tinytwin://kws01, tinytwin://./my.tflite, tinytwin:///abs/my.tflite
        model = urllib.parse.unquote(parts.netloc + parts.path).rstrip("/")
        pairs = urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
        fields: dict[str, Any] = dict(defaults)
        handler: dict[str, str] = {}
        for key, value in pairs:
            if key in URL_HANDLER_OPTIONS:
                handler[key] = value
                continue
            if key not in URL_OPTIONS:
                raise ConfigError(
                    f"unknown option {key!r} in {url!r}; valid options: {', '.join(valid_url_options())}"
                )
            fields[URL_OPTIONS[key]] = _url_value(key, value)
        return cls(model=model, **fields), handler


def valid_url_options() -> list[str]:
    return [*URL_OPTIONS, *URL_HANDLER_OPTIONS]


def _url_value(key: str, value: str) -> Any:
    field = URL_OPTIONS[key]
    if field in ("energy_mode", "honour_host_baud"):
        v = value.strip().lower()
        if v in _TRUE or v == "":
            flag = True
        elif v in _FALSE:
            flag = False
        else:
            raise ConfigError(f"{key}= takes 1 or 0 (true/false), got {value!r}")
        return (not flag) if field == "honour_host_baud" else flag
    if field in ("baud", "timer_start_us"):
        try:
            return int(value, 0)
        except ValueError:
            raise ConfigError(f"{key}= takes a whole number, got {value!r}") from None
    if field == "clock_mhz":
        try:
            return float(value)
        except ValueError:
            raise ConfigError(f"{key}= takes a number of MHz, got {value!r}") from None
    if field == "timing_profile":
        from .models.profiles import PROFILES

        if value in PROFILES:
            raise ConfigError(
                f"profile= is the timing profile JSON (as --profile); for the I/O profile write io_profile={value}"
            )
    if field in ("models_dir", "timing_profile", "io_profile"):
        return value or None  # an empty value is the default
    return value


# --------------------------------------------------------------------------------------------
# the command line: one option set for `dut`, `rig` and `external`

SPEED_HELP = (
    "realtime (every byte and inference takes the board's wall time), "
    "fast (busy periods cost no wall time; printed timestamps are still the board's), "
    "or a factor such as 10"
)

#: the command-line option each TwinConfig check names
CLI_NAMES = {
    "model": "--model", "speed": "--speed", "baud": "--baud", "timer_start_us": "--timer-start-us",
    "clock_mhz": "--clock-mhz", "power_profile": "--power-profile", "firmware_variant": "--firmware-variant",
}


def _option_specs(speed_default: str, speed_help: str, model_help: str) -> list[tuple[str, Any, Any, tuple, dict]]:
    """(parameter, type, default, option names, typer.Option keywords)."""
    return [
        ("model", str, ..., ("--model", "-m"), {"help": model_help}),
        ("models_dir", Optional[Path], None, ("--models-dir",), {"help": MODELS_DIR_HELP}),
        ("io_profile", Optional[str], None, ("--io-profile",),
         {"help": "for your own .tflite: which official model's I/O it follows (kws01, vww01, ic01, ad01)"}),
        ("backend", str, "tflm", ("--backend",),
         {"help": "tflm (bit-exact with the board) or litert, litert-ref, litert-builtin (faster; see the README)"}),
        ("speed", str, speed_default, ("--speed",), {"help": speed_help}),
        ("profile", Optional[Path], None, ("--profile",),
         {"help": "timing profile JSON (from `tinytwin calibrate --measurements`); default: the reference board's"}),
        ("clock_mhz", Optional[float], None, ("--clock-mhz",),
         {"help": "CPU clock for the cycle and power models (default 120)"}),
        ("power_profile", Optional[Path], None, ("--power-profile",),
         {"help": "power profile JSON (from `tinytwin calibrate --energy`); default: fitted to the reference board"}),
        ("timer_start_us", int, 0, ("--timer-start-us",),
         {"help": "the DUT's 32-bit µs timer at reset (4294967296 - N: it wraps after N µs)"}),
        ("ignore_host_baud", bool, False, ("--ignore-host-baud",),
         {"help": "convenience: accept any baud the host sets instead of garbling bytes as a UART does"}),
        ("sd_card", Optional[Path], None, ("--sd-card",),
         {"help": "sww01: the directory the H573 interface board's SD card holds (the WAV files `play` plays)"}),
    ]


def twin_options(
    *,
    speed_default: str | None = "realtime",
    speed_help: str = SPEED_HELP,
    power: bool = True,
    model_help: str = "kws01, vww01, ic01, ad01, sww01 (the streaming-wakeword firmware), or a path to your own int8 .tflite (then --io-profile)",
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Give a typer command the twin's options and a ``cfg`` argument.

    The decorated function declares its own options as usual plus a keyword
    ``cfg: TwinConfig``; the command line gets ``--model``, ``--models-dir``,
    ``--io-profile``, ``--backend``, ``--speed`` (unless ``speed_default`` is
    None: the command then keeps its own ``--speed``), ``--profile``,
    ``--clock-mhz``, ``--power-profile`` (with ``power``),
    ``--timer-start-us`` and ``--ignore-host-baud``. A bad value is a usage
    error naming the option."""
    import typer

    specs = [
        s for s in _option_specs(speed_default or "fast", speed_help, model_help)
        if (s[0] != "speed" or speed_default is not None) and (s[0] != "power_profile" or power)
    ]
    names = [s[0] for s in specs]

    def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
        hints = _hints(fn)
        own = [
            p.replace(kind=inspect.Parameter.KEYWORD_ONLY, annotation=hints.get(p.name, p.annotation))
            for p in inspect.signature(fn).parameters.values() if p.name != "cfg"
        ]
        added = [
            inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, annotation=typ,
                              default=typer.Option(default, *decls, **kw))
            for name, typ, default, decls, kw in specs
        ]
        params = added[:1] + own + added[1:]

        @functools.wraps(fn)
        def command(**kwargs: Any) -> Any:
            values = {n: kwargs.pop(n) for n in names}
            try:
                cfg = TwinConfig(
                    model=values["model"],
                    models_dir=values["models_dir"],
                    backend=values["backend"],
                    io_profile=values["io_profile"],
                    speed=values.get("speed", "fast"),
                    timing_profile=values["profile"],
                    clock_mhz=values["clock_mhz"],
                    power_profile=values.get("power_profile"),
                    timer_start_us=values["timer_start_us"],
                    honour_host_baud=not values["ignore_host_baud"],
                    sd_card=values["sd_card"],
                )
            except ConfigError as exc:
                raise typer.BadParameter(str(exc), param_hint=CLI_NAMES.get(getattr(exc, "option", ""))) from None
            return fn(cfg=cfg, **kwargs)

        del command.__wrapped__  # typer must see the signature below, not fn's
        command.__signature__ = inspect.Signature(params)
        command.__annotations__ = {p.name: p.annotation for p in params}
        return command

    return decorate


def _hints(fn: Callable[..., Any]) -> dict[str, Any]:
    import typing

    try:
        return typing.get_type_hints(fn, include_extras=True)
    except (NameError, TypeError):  # unresolvable names: keep the raw annotations
        return {}


__all__ = ["TwinConfig", "ConfigError", "URL_OPTIONS", "twin_options", "valid_url_options"]
