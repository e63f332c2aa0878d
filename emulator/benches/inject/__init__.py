"""What ``tinytwin external`` puts in front of a host program.

The launcher copies :file:`sitecustomize.py` (next to this one), with a
``ports.json`` describing the twin's boards, into a fresh temporary directory
that it prepends to the child's ``PYTHONPATH``; with a JS220 on the bench it
also copies the package :file:`pyjoulescope_driver` (the twin's stand-in for
Jetperch's driver, under the real ``joulescope`` package). See
``firmware_api_spec/external_runner.md`` for exactly what they change.
"""
from pathlib import Path

#: the file copied into the child's PYTHONPATH directory
SITECUSTOMIZE = Path(__file__).with_name("sitecustomize.py")

#: the stand-in driver package copied in when the bench has a JS220
JOULESCOPE_DRIVER = Path(__file__).with_name("pyjoulescope_driver")

#: environment variable naming the ports.json the injected module reads
PORTS_ENV = "TINYTWIN_EXTERNAL_PORTS"
