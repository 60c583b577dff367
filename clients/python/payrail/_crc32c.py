"""CRC32C (Castagnoli), the checksum of every frame header and body.

The standard library has only the IEEE CRC-32 (zlib), so this is a
table-driven implementation, slicing by 8: eight table look-ups per 8 bytes
of input, which makes a full 1 MiB frame about eight times cheaper than a
byte-at-a-time loop in CPython.
"""

import struct

_POLYNOMIAL_REFLECTED = 0x82F63B78


def _tables():
    first = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ _POLYNOMIAL_REFLECTED if crc & 1 else crc >> 1
        first.append(crc)
    tables = [first]
    for _ in range(7):
        previous = tables[-1]
        tables.append([(previous[i] >> 8) ^ first[previous[i] & 0xFF] for i in range(256)])
    return [tuple(table) for table in tables]


_T0, _T1, _T2, _T3, _T4, _T5, _T6, _T7 = _tables()
_WORDS = struct.Struct("<II")


def crc32c(data, crc=0):
    """The CRC32C of ``data`` (bytes-like), continuing from ``crc``."""
    crc ^= 0xFFFFFFFF
    view = memoryview(data).cast("B")
    length = len(view)
    head = length - length % 8
    if head:
        t0, t1, t2, t3, t4, t5, t6, t7 = _T0, _T1, _T2, _T3, _T4, _T5, _T6, _T7
        for low, high in struct.iter_unpack("<II", view[:head]):
            low ^= crc
            crc = (
                t7[low & 0xFF]
                ^ t6[(low >> 8) & 0xFF]
                ^ t5[(low >> 16) & 0xFF]
                ^ t4[low >> 24]
                ^ t3[high & 0xFF]
                ^ t2[(high >> 8) & 0xFF]
                ^ t1[(high >> 16) & 0xFF]
                ^ t0[high >> 24]
            )
    t0 = _T0
    for byte in view[head:]:
        crc = t0[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF
