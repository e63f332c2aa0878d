"""The protocol core's fast paths (runs of ordinary bytes copied at once in
``DutCore.receive``, ``db HH..`` chunks decoded at once) against the
firmware's byte-by-byte algorithm, kept here as the reference: same scripts,
same state (command buffer, stdin newline state, db buffer and positions),
for random streams cut into random pieces."""
from __future__ import annotations

import random
from dataclasses import dataclass

import pytest

from emulator.dut import core as dutcore
from emulator.dut.core import EE_CMD_SIZE, EE_CMD_TERMINATOR, DutCore, Print


@dataclass(frozen=True)
class Prof:
    name: str = "kws01"
    model_version: str = "v"
    max_db_input_size: int = 64
    input_count: int = 49
    input_elem_size: int = 1


class ReferenceCore(DutCore):
    """``receive`` and ``db HH..`` exactly as the firmware loops over bytes."""

    def receive(self, data: bytes):
        cmd = self.cmd
        for c in data:
            prev, self.stdin_prev = self.stdin_prev, c
            if c in (0x0D, 0x0A):
                if prev in (0x0D, 0x0A) and prev != c:
                    continue
                c = 0x0A
            if c == EE_CMD_TERMINATOR:
                line = bytes(cmd[:EE_CMD_SIZE])
                cmd.clear()
                script = self.execute(line)
                if script is not None:
                    yield script
            elif len(cmd) < EE_CMD_SIZE:
                cmd.append(c)

    def _load_hex_fast(self, digits, ops):
        return False  # always the byte loop

    def _buffer_parse(self, toks, ops):
        # the byte loop as it was written originally (a per-character check)
        p = toks.next()
        if p is None or p in (b"load", b"print"):
            toks._i -= p is not None
            return super()._buffer_parse(toks, ops)
        maxsize = self.profile.max_db_input_size
        digits = p[:EE_CMD_SIZE]
        if len(digits) & 1:
            ops.append(Print(b"e-[Insufficent number of hex digits]\r\n"))
            return
        for i in range(0, len(digits), 2):
            pair = digits[i : i + 2]
            try:
                if not all(ch in b"0123456789abcdefABCDEF" for ch in pair):
                    raise ValueError
                value = int(pair, 16)
            except ValueError:
                ops.append(Print(b"e-[Invalid hex digit '" + dutcore.crlf(pair) + b"']\r\n"))
                return
            if self.buff_pos < maxsize:
                self.buff[self.buff_pos] = value
            else:
                self.lost_writes += 1
            self.buff_pos = (self.buff_pos + 1) & 0xFFFFFFFF
            if self.buff_pos == self.buff_size:
                ops.append(Print(b"m-load-done\r\n"))
                return


def state(core: DutCore):
    return (bytes(core.cmd), core.stdin_prev, bytes(core.buff), core.buff_pos, core.buff_size, core.lost_writes)


def random_stream(rng: random.Random) -> bytes:
    parts = []
    for _ in range(rng.randrange(1, 12)):
        kind = rng.random()
        if kind < 0.3:
            parts.append(b"db load %d%%" % rng.choice([0, 1, 7, 31, 49, 63, 64, 65, 100]))
        elif kind < 0.7:
            n = rng.choice([1, 2, 5, 31, 40, 41, 60])
            digits = bytes(rng.randrange(256) for _ in range(n)).hex().encode()
            if rng.random() < 0.3:
                digits = digits.upper()
            if rng.random() < 0.2:  # a bad digit, an odd count, or a separator
                i = rng.randrange(len(digits))
                digits = digits[:i] + rng.choice([b"g", b"\n", b"\r", b" ", b"\0", b"x"]) + digits[i + 1 :]
            parts.append(b"db " + digits + b"%")
        elif kind < 0.85:
            parts.append(rng.choice([b"name%", b"\r\n", b"\n\r", b"\r\r", b"%", b"db print 8%", b"db%"]))
        else:
            parts.append(bytes(rng.choice(b"ab \r\n%\0") for _ in range(rng.randrange(1, 120))))
    return b"".join(parts)


@pytest.mark.parametrize("seed", range(40))
def test_fast_paths_match_the_byte_loop(seed: int) -> None:
    rng = random.Random(seed)
    fast, ref = DutCore(Prof()), ReferenceCore(Prof())
    for core in (fast, ref):
        core.enable_parser()
    for _ in range(30):
        data = random_stream(rng)
        cuts = sorted(rng.sample(range(1, len(data)), min(len(data) - 1, rng.randrange(0, 4)))) if len(data) > 1 else []
        pieces = [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)])]
        for piece in pieces:
            assert list(fast.receive(piece)) == list(ref.receive(piece))
            assert state(fast) == state(ref)


def test_db_chunk_fast_path_corner_cases() -> None:
    fast, ref = DutCore(Prof()), ReferenceCore(Prof())
    for core in (fast, ref):
        core.enable_parser()
    chunk = b"db " + bytes(range(31)).hex().encode() + b"%"
    # before any db load (size 0), across the declared size, past the buffer
    # end (bytes lost), after m-load-done, and a wrap-free overshoot
    stream = chunk * 3 + b"db load 40%" + chunk + chunk + chunk + b"db load 64%" + chunk * 3 + b"db load 3%" + chunk
    pos, sizes = 0, [1, 7, 66, 3, 200]
    while pos < len(stream):
        piece = stream[pos : pos + sizes[pos % len(sizes)]]
        pos += len(piece)
        assert list(fast.receive(piece)) == list(ref.receive(piece))
        assert state(fast) == state(ref)
