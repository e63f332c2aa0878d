"""What ``tinytwin external`` puts in front of a host program.

The only file injected is :file:`sitecustomize.py` (next to this one): the
launcher copies it, with a ``ports.json`` describing the twin's boards, into a
fresh temporary directory that it prepends to the child's ``PYTHONPATH``. See
``firmware_api_spec/external_runner.md`` for exactly what it changes.
"""
from pathlib import Path

#: the file copied into the child's PYTHONPATH directory
SITECUSTOMIZE = Path(__file__).with_name("sitecustomize.py")

#: environment variable naming the ports.json the injected module reads
PORTS_ENV = "TINYTWIN_EXTERNAL_PORTS"
