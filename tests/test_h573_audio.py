"""The interface board's audio path: the SD card directory, ``ls``, ``play``'s
WAV parsing and answers, the 8 KiB double buffer that never plays a file's last
4 KiB block, and the I2S stream on the clock (emulator/ioman/wave.py,
emulator/ioman/h573.py, emulator/ioman/device.py, emulator/hw/sdcard.py)."""
from __future__ import annotations

import io
import struct

import numpy as np
import pytest

from emulator.hw.i2s import I2sLink, SaiReceiver
from emulator.hw.sdcard import SdCard, SdCardError
from emulator.ioman import wave as W
from emulator.ioman.actions import ToHost
from emulator.ioman.device import PLAY_START_US, H573IoManager
from emulator.ioman.h573 import H573IoCore, PlayWave
from emulator.sim import MS, US, Twin
from emulator.hw.uart import SerialEndpoint, connect

ERROR = W.ERROR_TEXT.decode()


def wav_bytes(pairs: int, *, channels: int = 2, bits: int = 16, rate: int = 16000, data: bytes | None = None,
              tag: bytes = b"WAVEfmt ") -> bytes:
    width = bits // 8
    if data is None:
        data = (np.arange(pairs * channels, dtype=np.int64) % 20011 - 10000).astype("<i2").tobytes() if bits == 16 \
            else bytes(pairs * channels * width)
    head = (b"RIFF" + struct.pack("<I", 36 + len(data)) + tag
            + struct.pack("<IHHIIHH", 16, 1, channels, rate, rate * channels * width, channels * width, bits)
            + b"data" + struct.pack("<I", len(data)))
    return head + data


def firmware_played(data: bytes, buffer: bytearray | None = None) -> tuple[bytes, bytearray]:
    """WaveSink::IndirectPlay's loop, written out independently: read 8 KiB,
    then after each half played refill it; stop when a read returns nothing."""
    buf = bytearray(8192) if buffer is None else buffer
    pos = 0

    def read(at: int, n: int) -> int:
        nonlocal pos
        chunk = data[pos : pos + n]
        pos += len(chunk)
        buf[at : at + len(chunk)] = chunk
        return len(chunk)

    played = []
    got = read(0, 8192)
    idx = 0
    while got > 0:
        played.append(bytes(buf[idx * 4096 : (idx + 1) * 4096]))
        got = read(idx * 4096, 4096)
        idx ^= 1
    return b"".join(played), buf


# ---------------------------------------------------------------- header and rate


def test_header_as_wavesource_reads_it():
    h = W.parse_header(wav_bytes(10))
    assert (h.format, h.channels, h.sample_rate, h.bits, h.data_size) == (1, 2, 16000, 16, 40)
    assert W.parse_header(wav_bytes(10)[:43]) is None  # short read
    assert W.parse_header(wav_bytes(10, tag=b"WAVEfmtX")) is None
    bad = bytearray(wav_bytes(10))
    bad[36:40] = b"LIST"  # an extra chunk before data: the firmware does not skip chunks
    assert W.parse_header(bytes(bad)) is None


@pytest.mark.parametrize("channels,bits,ok", [(2, 16, True), (2, 24, True), (2, 32, True), (4, 16, True),
                                              (1, 16, False), (3, 16, False), (2, 8, False), (0, 16, False)])
def test_what_the_sai_accepts(channels, bits, ok):
    h = W.parse_header(wav_bytes(4, channels=max(channels, 1), bits=bits if bits != 8 else 16))
    h = W.WaveHeader(h.riff_size, h.fmt_size, h.format, channels, h.sample_rate, h.byte_rate, h.block_align, bits,
                     h.data_size)
    assert (W.configure_error(h) is None) == ok


def test_sai_rate_from_the_hal_divider():
    assert W.sai_rate_hz(16000) == 16000.0  # MCKDIV 12: exact
    assert W.sai_rate_hz(8000) == 8000.0
    assert W.sai_rate_hz(44100) == 48000.0  # MCKDIV 4.35 -> 4
    assert W.sai_rate_hz(22050) == pytest.approx(49.152e6 / 256 / 8)  # 8.7 -> 8 (rounded up only from .9)


@pytest.mark.parametrize("data_bytes", [0, 100, 4096, 6000, 8192, 8193, 12288, 640000, 76_800_000])
def test_the_last_block_is_never_played(data_bytes):
    want = 0 if data_bytes == 0 else max(1, -(-data_bytes // 4096) - 1)
    assert W.played_halves(data_bytes) == want
    if data_bytes <= 640000:
        played, _ = firmware_played(bytes(data_bytes))
        assert len(played) == want * 4096


def test_short_test_file_gives_312_frames_and_the_long_one_37498():
    assert W.played_halves(640000) * 1024 // 512 == 312
    assert W.played_halves(76_800_000) * 1024 // 512 == 37498
    assert W.played_halves(64000) * 1024 // 512 == 30  # marvin_617de221_0.wav


@pytest.mark.parametrize("pairs", [25, 1024, 1500, 2048, 3000, 10_000])
def test_played_stream_is_the_firmware_loop(pairs):
    raw = wav_bytes(pairs)
    stale = bytearray(np.random.default_rng(pairs).integers(0, 256, 8192, dtype=np.uint8).tobytes())
    want, want_buf = firmware_played(raw[44:], bytearray(stale))
    buf = bytearray(stale)
    s = W.PlayedStream(W.parse_header(raw), io.BytesIO(raw), len(raw) - 44, buf)
    got = b"".join(s.read(n, min(300, s.pairs - n)) for n in range(0, s.pairs, 300))
    assert got == want  # a file under 4 KiB: its data, then what the buffer held before
    s.finish()
    assert buf == want_buf  # the buffer persists into the next play


def test_finish_without_reading_leaves_the_buffer_as_the_firmware_does():
    raw = wav_bytes(5000)
    _, want_buf = firmware_played(raw[44:])
    buf = bytearray(8192)
    W.PlayedStream(W.parse_header(raw), io.BytesIO(raw), len(raw) - 44, buf).finish()
    assert buf == want_buf


def test_a_32_bit_file_gives_the_top_16_bits_and_extra_channels_are_dropped():
    words = np.array([0x12345678, 0x7FFF0000, -0x10000, 5] * 4, dtype="<i4")
    raw = wav_bytes(8, channels=2, bits=32, data=words.tobytes())
    s = W.PlayedStream(W.parse_header(raw), io.BytesIO(raw), len(raw) - 44, bytearray(8192))
    assert s.pairs == 4096 // 8
    first = np.frombuffer(s.read(0, 2), dtype="<i2")
    assert list(first) == [0x1234, 0x7FFF, -1, 0]
    four = np.arange(64, dtype="<i2")
    raw4 = wav_bytes(16, channels=4, data=four.tobytes())
    s4 = W.PlayedStream(W.parse_header(raw4), io.BytesIO(raw4), len(raw4) - 44, bytearray(8192))
    assert list(np.frombuffer(s4.read(0, 2), dtype="<i2")) == [0, 1, 4, 5]


# ---------------------------------------------------------------- the SD card and the menu


@pytest.fixture
def card(tmp_path):
    (tmp_path / "b.wav").write_bytes(wav_bytes(3000))
    (tmp_path / "A_File.WAV").write_bytes(wav_bytes(3000))
    (tmp_path / ".hidden.wav").write_bytes(wav_bytes(10))
    (tmp_path / "mono.wav").write_bytes(wav_bytes(3000, channels=1))
    (tmp_path / "text.wav").write_bytes(b"hello, not a wave file at all" * 3)
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "deep.wav").write_bytes(wav_bytes(3000))
    return SdCard(tmp_path)


def test_sd_card_must_be_a_directory(tmp_path):
    with pytest.raises(SdCardError, match="no such directory"):
        SdCard(tmp_path / "nope")


def run(core: H573IoCore, line: bytes):
    core.feed_host(line + b"%")
    return core.step()


def test_ls_lists_files_not_directories_or_hidden_ones(card):
    core = H573IoCore(card=card)
    acts = run(core, b"ls")
    assert acts == [ToHost(b"A_File.WAV\r\nb.wav\r\nmono.wav\r\ntext.wav\r\nm-ready\r\n")]
    assert run(core, b"ls sub") == acts  # the argument is not used
    assert run(H573IoCore(), b"ls") == [ToHost(b"m-ready\r\n")]  # no card given: no file


@pytest.mark.parametrize("name,why", [(b"missing.wav", "not on the SD card"), (b"mono.wav", "even number"),
                                      (b"text.wav", "44-byte"), (b"", "flash")])
def test_play_errors_answer_as_the_firmware(card, name, why):
    core = H573IoCore(card=card)
    acts = run(core, b"play " + name if name else b"play")
    shown = name or b"@0x08080000"
    assert acts[0] == ToHost(b"Attempting to play " + shown + b"\n")
    assert isinstance(acts[1], PlayWave) and acts[1].stream is None and why in acts[1].why
    assert acts[2:] == [ToHost(W.ERROR_TEXT), ToHost(b"m-ready\r\n")]


def test_play_opens_names_as_fat_does(card):
    core = H573IoCore(card=card)
    for name in (b"a_file.wav", b"B.WAV", b"sub/deep.wav", b"SUB\\DEEP.WAV"):
        acts = run(core, b"play " + name)
        assert acts[1].stream is not None, name
        assert acts[-2:] == [ToHost(b"succeeded.\n"), ToHost(b"m-ready\r\n")]
    assert run(core, b"play ../b.wav")[1].stream is None  # nothing outside the card


def test_a_first_detection_is_compared_with_dut_state():
    """wwdet_timestamps[-1] is dut_state: 1 after record_detections, so a
    first pulse exactly 11 ms later is ignored (1 < 11-10 is false)."""
    t = [0]
    core = H573IoCore(clock_10us=lambda: t[0])
    run(core, b"record_detections")
    t[0] = 1100
    core.ww_detection_edge()
    assert core.detections == []
    t[0] = 1200
    core.ww_detection_edge()
    assert core.detections == [12]


# ---------------------------------------------------------------- on the clock


class Host:
    def __init__(self, twin, board):
        self.twin = twin
        self.rx: list[tuple[int, int]] = []
        self.ep = SerialEndpoint(twin, "host", 115200, receiver=lambda d: self.rx.extend((twin.now, b) for b in d))
        connect(self.ep, board.host_uart)

    def send(self, text: str) -> None:
        self.ep.send(text.encode())

    def text(self) -> str:
        return bytes(b for _, b in self.rx).decode("latin-1")

    def when(self, s: str) -> int:
        data = bytes(b for _, b in self.rx)
        i = data.find(s.encode())
        assert i >= 0, (s, data)
        return self.rx[i + len(s) - 1][0]


def board(card, twin=None):
    twin = twin or Twin("fast")
    link = I2sLink(twin)
    got: list[tuple[int, bytes]] = []
    rx = SaiReceiver(twin, link, lambda data: (got.append((twin.now, data)), rx.arm(512)))
    io_ = H573IoManager(twin, card=card, i2s=link)
    twin.run_until_idle()
    return twin, io_, link, rx, got, Host(twin, io_)


def test_play_streams_frames_every_32_ms_and_answers_after_the_file(card):
    twin, io_, link, rx, got, host = board(card)
    rx.arm(512)
    host.send("play b.wav%")
    twin.run_until_idle()
    raw = (card.root / "b.wav").read_bytes()
    want, _ = firmware_played(raw[44:])
    assert len(got) == len(want) // 2048 == 4  # 3000 pairs: 2 halves = 2048 pairs = 4 frames
    assert b"".join(d for _, d in got) == want
    start = io_.plays[0]["start_ns"]
    assert [t - start for t, _ in got] == [32 * MS * (k + 1) for k in range(4)]
    attempted = host.when("Attempting to play b.wav\n")
    assert start - attempted == pytest.approx(PLAY_START_US * US, abs=2 * US)
    assert host.when("succeeded.\n") > got[-1][0]
    assert host.text().endswith("Attempting to play b.wav\nsucceeded.\nm-ready\r\n")


def test_the_menu_waits_while_playing_and_a_second_play_follows_the_first(card):
    twin, io_, link, rx, got, host = board(card)
    host.send("play b.wav%")
    twin.run_until_idle(limit_ns=twin.now + 40 * MS)
    host.send("name%play a_file.wav%")  # during the first play: queued, not lost
    twin.run_until_idle()
    text = host.text()
    assert text.index("succeeded.") < text.index("tinyML Enhanced Interface Board") < text.index("Attempting to play a_file.wav")
    assert text.count("succeeded.") == 2
    first, second = io_.plays
    assert second["start_ns"] > first["end_ns"]


def test_a_dut_that_rearms_late_gets_the_fifo_then_a_jump(card):
    twin, io_, link, _, _, host = board(card)
    got = []

    def late(data):
        got.append(data)
        twin.schedule(40 * MS, lambda: rx.arm(512))  # re-armed 40 ms after each completion

    rx = SaiReceiver(twin, link, late)
    rx.arm(512)
    host.send("play b.wav%")
    twin.run_until_idle()
    stream = np.frombuffer(firmware_played((card.root / "b.wav").read_bytes()[44:])[0], dtype="<i2").reshape(-1, 2)
    second = np.frombuffer(got[1], dtype="<i2").reshape(-1, 2)
    assert np.array_equal(second[:4], stream[512:516])  # the FIFO's 4 oldest pairs
    k1 = 512 + 640  # 40 ms = 640 pairs later the DMA takes what comes next
    assert np.array_equal(second[4:], stream[k1 : k1 + 508])
    assert rx.lost_pairs >= 636
