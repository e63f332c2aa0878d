"""The interface board's audio player, as its firmware plays a WAV file (pure).

What ``play <file>`` of the STM32H573I-DK interface firmware (mlcommons/tiny
``benchmark/interface``, read at 1afd2c9) does with a file, without time and
without I/O (the file comes through an injected :class:`Card`):

* ``WaveSource::Open`` reads a *canonical* 44-byte header field by field
  (``Application/Audio/WaveSource.cpp``): ``RIFF``, a size, ``WAVEfmt `` (8
  bytes), the fmt chunk size (read, never used), format, channels, sample rate,
  byte rate, block alignment, bits per sample, ``data``, the data size (read,
  never used). Any short read or wrong tag makes the file invalid. The format
  (PCM or not) is not checked. The data start right after those 44 bytes,
  whatever the chunk sizes say, and run to the end of the file.
* ``RawI2SWaveSink::Configure`` sets the SAI (master transmitter, I2S
  standard) to the header's rate, channel count and sample size; the HAL
  refuses an odd channel count (I2S needs an even number of slots) and a
  sample size other than 16, 24 or 32 bits (``HAL_SAI_InitProtocol``).
  Either makes ``play`` answer ``Error playing file. Check that the file exists
  and is a 2-channel wav file.``, as does a missing file.
* The SAI's master clock divider is computed by the HAL from the 49.152 MHz
  kernel clock (PLL2P from HSI: 64/25x96/5 MHz, ``Core/Src/sai.c``):
  ``MCKDIV = round(49.152 MHz / (Fs x 256))`` with the HAL's rounding (up only
  when the tenth is 9), so a rate is played exactly only when 49.152 MHz /
  256 / Fs is an integer: 16 kHz (MCKDIV 12) is, 44.1 kHz is played at 48 kHz.
* ``WaveSink::IndirectPlay`` (``Application/Audio/WaveSink.cpp``) plays an
  8 KiB circular DMA buffer: it reads 8 KiB, starts the DMA, and at each
  half-buffer callback refills the half just played with the next 4 KiB;
  when a read returns no byte it stops at once. So the last block read (4 KiB,
  or what was left) is never played: ``(ceil(D/4096) - 1) x 4096`` bytes of D
  data bytes are (D > 8 KiB), one half (4 KiB: the data, then whatever the
  buffer held before) for 0 < D <= 8 KiB, nothing for D = 0. The buffer
  persists from one ``play`` to the next (heap, never cleared; zeros at first
  in the twin).

What the DUT's SAI (slave receiver, 16-bit slots, 2 slots) receives from that
stream is given by :class:`PlayedStream`: the left and right 16-bit slot of
each frame as little-endian int16 pairs. For 16-bit stereo files that is the
file's samples; 24- and 32-bit files, and files with more than two channels,
are played by the board but what a 16-bit two-slot receiver makes of their
longer frames is not known (the twin hands over the 16 most significant bits
of the first two slots of each frame: stated, not verified).
"""
from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import BinaryIO, Protocol

import numpy as np

HEADER_BYTES = 44
PLAY_BUFFER_BYTES = 8 * 1024  # PLAY_BUFFER_BYTES
HALF_BYTES = PLAY_BUFFER_BYTES // 2
#: SAI1 kernel clock on the H573I-DK: PLL2P from HSI 64 MHz / 25 * 96 / 5
SAI_KERNEL_HZ = 64_000_000 * 96 / 25 / 5
MCKDIV_BITS = 6
ERROR_TEXT = b"Error playing file. Check that the file exists and is a 2-channel wav file.\n"


class Card(Protocol):
    """What the firmware's FileX layer gives the player: the root directory's
    entries as ``ls`` lists them, and files opened by name."""

    def listing(self) -> list[str]: ...

    def open(self, name: str) -> BinaryIO | None: ...


class NoFiles:
    """A card with no file on it: what the twin's board has without ``--sd-card``."""

    def listing(self) -> list[str]:
        return []

    def open(self, name: str) -> BinaryIO | None:
        return None

    def __repr__(self) -> str:
        return "NoFiles()"


@dataclass(frozen=True)
class WaveHeader:
    """The fields ``WaveSource::Open`` keeps (all read, most never used)."""

    riff_size: int
    fmt_size: int
    format: int
    channels: int
    sample_rate: int
    byte_rate: int
    block_align: int
    bits: int
    data_size: int

    @property
    def slot_bytes(self) -> int:
        """Bytes per sample word the DMA moves (16-bit: 2; 24/32-bit: 4)."""
        return 2 if self.bits == 16 else 4


def parse_header(head: bytes) -> WaveHeader | None:
    """``WaveSource::Open`` on the first bytes of a file: the header, or
    ``None`` where the firmware finds the file invalid."""
    if len(head) < HEADER_BYTES:
        return None
    if head[0:4] != b"RIFF" or head[8:16] != b"WAVEfmt " or head[36:40] != b"data":
        return None
    riff_size, = struct.unpack_from("<I", head, 4)
    fmt_size, fmt, ch, rate, byte_rate, align, bits = struct.unpack_from("<IHHIIHH", head, 16)
    data_size, = struct.unpack_from("<I", head, 40)
    return WaveHeader(riff_size, fmt_size, fmt, ch, rate, byte_rate, align, bits, data_size)


def configure_error(h: WaveHeader) -> str | None:
    """Why ``RawI2SWaveSink::Configure`` (``HAL_SAI_InitProtocol``) fails, or ``None``."""
    if h.channels % 2:
        return f"{h.channels} channel(s): I2S needs an even number of slots"
    if h.channels == 0:
        return "0 channels: no slot to play"
    if h.bits not in (16, 24, 32):
        return f"{h.bits}-bit samples: the SAI takes 16, 24 or 32"
    return None


def sai_rate_hz(sample_rate: int, kernel_hz: float = SAI_KERNEL_HZ) -> float:
    """The frame rate the SAI really runs at for a header rate (``HAL_SAI_Init``,
    NODIV = 0, no oversampling): MCKDIV from ``freq*10 / (Fs*256)`` rounded up
    only when its tenth is 9, written to a 6-bit field (0 divides by 1)."""
    k = int(kernel_hz)
    tmp = (k * 10) // (sample_rate * 256) if sample_rate > 0 else 0  # a divide by 0 gives 0 on Cortex-M
    mckdiv = tmp // 10 + (1 if tmp % 10 > 8 else 0)
    mckdiv &= (1 << MCKDIV_BITS) - 1
    return kernel_hz / (256 * max(1, mckdiv))


def played_halves(data_bytes: int) -> int:
    """How many 4 KiB halves of the DMA buffer are played for a file with
    ``data_bytes`` after its header (the last block read never is)."""
    if data_bytes <= 0:
        return 0
    return max(1, -(-data_bytes // HALF_BYTES) - 1)


class PlayedStream:
    """The audio the SAI clocks out for one ``play``, as the DUT's receiver
    sees it: ``pairs`` stereo 16-bit slot pairs, read in increasing order
    with :meth:`read`.

    It re-enacts ``WaveSink::IndirectPlay`` on the file (first 8 KiB, then 4
    KiB into the half just played), lazily, so a 1200 s file is never held in
    memory; ``buffer`` is the player's persistent 8 KiB buffer, updated as the
    firmware updates it.
    """

    def __init__(self, header: WaveHeader, fh: BinaryIO, data_bytes: int, buffer: bytearray,
                 kernel_hz: float = SAI_KERNEL_HZ):
        self.header = header
        self.fh = fh
        self.buffer = buffer
        self.halves = played_halves(data_bytes)
        self.frame_bytes = header.channels * header.slot_bytes
        self.pairs = self.halves * HALF_BYTES // self.frame_bytes
        self.rate_hz = sai_rate_hz(header.sample_rate, kernel_hz)
        self._next_half = 0  # the next half to finish playing
        self._idx = 0  # which half of the buffer that is
        self._cache: dict[int, bytes] = {}  # half number -> its 4096 bytes as played
        self._started = False

    def _fill(self, at: int, n: int) -> int:
        data = self.fh.read(n)
        self.buffer[at : at + len(data)] = data
        return len(data)

    def _produce(self) -> None:
        """The next half of the buffer to finish playing, then the refill of
        that half (the read after the last played half is the one that
        returns nothing, or the block that is never played)."""
        if not self._started:
            self._started = True
            self.fh.seek(HEADER_BYTES)
            self._fill(0, PLAY_BUFFER_BYTES)
        k = self._next_half
        base = self._idx * HALF_BYTES
        self._cache[k] = bytes(self.buffer[base : base + HALF_BYTES])
        self._next_half += 1
        self._fill(base, HALF_BYTES)
        self._idx ^= 1
        for old in [h for h in self._cache if h < k - 1]:
            del self._cache[old]

    def _bytes(self, b0: int, b1: int) -> bytes:
        out = []
        b = b0
        while b < b1:
            half, off = divmod(b, HALF_BYTES)
            while half >= self._next_half:
                self._produce()
            if half not in self._cache:
                raise IndexError(f"byte {b} of the stream was already played (it is read in order)")
            take = min(b1 - b, HALF_BYTES - off)
            out.append(self._cache[half][off : off + take])
            b += take
        return b"".join(out)

    def read(self, n0: int, count: int) -> bytes:
        """Pairs ``n0 .. n0+count-1`` as the receiver's left and right 16-bit
        slots, little-endian int16."""
        if count <= 0:
            return b""
        if n0 < 0 or n0 + count > self.pairs:
            raise IndexError(f"pairs {n0}..{n0 + count} outside the played stream of {self.pairs}")
        h = self.header
        raw = self._bytes(n0 * self.frame_bytes, (n0 + count) * self.frame_bytes)
        if h.bits == 16:
            words = np.frombuffer(raw, dtype="<i2").reshape(-1, h.channels)[:, :2]
            return np.ascontiguousarray(words).astype("<i2").tobytes()
        words = np.frombuffer(raw, dtype="<u4").reshape(-1, h.channels)[:, :2]
        # the SAI sends the DataSize least significant bits of each 32-bit word,
        # MSB first; a 16-bit slot receiver keeps the first 16 of them
        shift = 8 if h.bits == 24 else 16
        return ((words >> shift) & 0xFFFF).astype("<u2").tobytes()

    def finish(self) -> None:
        """Bring the player's buffer to what it holds after the whole file
        was played (the halves nobody read are not produced one by one: each
        half of the buffer holds the last blocks read into it), then close."""
        if self.fh.closed:
            return
        if self._next_half < self.halves:
            first = self._next_half + 2 if self._started else 0  # the first block not yet read
            self._started = True
            last = self.halves + 1  # the final refill read (empty or the unplayed block)
            for b in range(max(first, last - 3), last + 1):
                self.fh.seek(HEADER_BYTES + b * HALF_BYTES)
                self._fill((b % 2) * HALF_BYTES, HALF_BYTES)
            self._next_half = self.halves
        self.fh.close()

    def close(self) -> None:
        self.fh.close()
