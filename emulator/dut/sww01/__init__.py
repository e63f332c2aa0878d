"""The streaming-wakeword (sww01) DUT firmware: mlcommons/tiny's ``sww_ref_l4r5zi``.

A different firmware from the EEMBC one of :mod:`emulator.dut.core`: every command
is echoed (``Received command: ...``), audio arrives over I2S, features are
extracted on the device every 32 ms and the model runs in the DMA interrupt.

* :mod:`.features`: the feature extraction in the firmware's float32 order, the
  int8 conversion and the model-window bookkeeping (pure numpy);
* :mod:`.core`: the firmware as a pure protocol core (bytes and I2S frames in,
  actions out; no time, no I/O);
* :mod:`.model`: the sww01 model through TFLite Micro, found by the project's
  model resolver.

The protocol in prose: ``firmware_api_spec/sww01_protocol.md``.
"""
