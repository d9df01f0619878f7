"""Decompression bombs (issue 10): small files that declare or decode to far more than they weigh."""

from __future__ import annotations


def npy_header(descr: str, shape: tuple[int, ...]) -> bytes:
    """A version 1.0 .npy header for an array of `descr` and `shape`, padded as numpy pads it (64 bytes)."""
    text = f"{{'descr': {descr!r}, 'fortran_order': False, 'shape': {shape!r}, }}"
    text += " " * (-(10 + len(text) + 1) % 64) + "\n"
    return b"\x93NUMPY\x01\x00" + len(text).to_bytes(2, "little") + text.encode("latin1")


def npz_bomb(members: dict[str, tuple[str, tuple[int, ...], int]]) -> bytes:
    """An .npz of deflated members `name: (descr, shape, data bytes)`, the data zeros written 1 MB at a time.

    The data size need not match the header's shape x itemsize, so a test can build an honest bomb (huge
    and consistent, tiny once compressed) or a lying one (a huge header over a few bytes of data).
    """
    import io
    import zipfile

    buffer = io.BytesIO()
    chunk = bytes(1 << 20)
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, (descr, shape, size) in members.items():
            with archive.open(f"{name}.npy", "w", force_zip64=True) as member:
                member.write(npy_header(descr, shape))
                for start in range(0, size, len(chunk)):
                    member.write(chunk[: min(len(chunk), size - start)])
    return buffer.getvalue()
