"""tinytwin's emulator: the reference board, its bench and their one clock.

Architecture, in layers (an import may only point down this list; the rules
are checked by ``tests/test_layering.py``):

1. **Pure parts**: no clock, no I/O, no threads.
   ``errors`` (the one user-facing error base), ``clib`` (the C library's
   number parsing), ``core`` (the one convention of protocol cores: bytes in
   with ``feed``, actions out of ``step``; the shared ``Hang``), the protocol
   cores themselves (``dut.core``, ``ioman.arduino``, ``ioman.h573``,
   ``ioman.actions``, ``emon.lpm01a.core``, ``emon.lpm01a.stream``,
   ``emon.js220.core``, and every
   ``*.core`` a new firmware adds), ``models`` (the model engine), ``cpu``
   (the cycle model), ``power.trace`` (the energy trace file format),
   ``pystack`` (room on CPython's frame stack for a hot loop), ``figures``
   (a figure drawn without pyplot, for every plot tinytwin saves).
   Rule 1: these never import SimPy, the clock, a board part, a transport, a
   bench, or an OS-level I/O module (select, socket, termios, tty, pty,
   threading, serial).
2. **The clock**: ``sim`` (one SimPy environment per twin; wall time enters
   only here). Rule 2: it imports no other emulator module.
3. **Board parts and devices**: ``hw`` (UART, GPIO, the USB-serial bridge),
   ``dut.device``, ``dut.timing``, ``dut.express`` (the DUT's fused direct path
   for a `db` chunk), ``ioman.device``, ``emon.lpm01a.device``,
   ``emon.js220.device``,
   ``power.model`` (and the package ``__init__`` files that re-export them),
   ``whatif`` (board descriptions, stack profiles, energy and battery
   what-ifs, sweep plans: computations on top of ``power.model``).
   They run on the clock and carry out what the cores decide. Rule 3: they
   never import a transport implementation (``transport.pty``/``tcp``), a
   bench or a front end; ``transport.base`` (what a host port is) is allowed.
4. **Transports**: ``transport`` (host ports: pty, TCP, Unix sockets, the
   in-process memory port). Rule 4:
   thin; they import no device, no core, no bench.
5. **Benches**: ``config`` (the one configuration of a twin, ``TwinConfig``)
   and ``benches`` (a DUT bench, the energy rig and its set-ups, the
   external-runner launcher, an accuracy run through the twin) assemble parts,
   devices and transports; ``control`` acts on a running bench (the one tap on
   each host port, faults, the control socket, fault plans).
6. **Front ends**: ``cli``, ``urlhandler`` (the ``tinytwin://`` pyserial URL),
   ``models.cli``, ``cpu.cli``, ``control.cli`` (``tinytwin ctl``),
   ``whatif.cli`` (``whatif``, ``sweep``: it runs accuracy checks on
   ``benches.accuracy``).

The host runner (top-level ``runner``) works the same against a board and a
twin. Rule 5: it imports from ``emulator`` only ``errors``, ``power.trace``
(the file format it writes), ``figures`` (how it draws), ``pystack`` (where
its hot loop runs),
``urlhandler`` (to register ``tinytwin://``) and ``models`` (the dataset
synthesizer labels inputs with the model); and only ``emulator.cli`` imports
``runner``.
"""
