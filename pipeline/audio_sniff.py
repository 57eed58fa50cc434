"""Identify an audio container from its first bytes, never from the file name.

The sniffer answers four questions cheaply (a few small reads, no decoding):

* which container is this (``wav``, ``flac``, ``mp3``, ``mp4``, ...; ``unknown`` otherwise)?
* if it is none: is the content something known not to be audio (an image, text, an archive, a
  document, ...)? Such files need no decoder to be rejected; an unknown binary may still be a
  format only FFmpeg knows, so it is left to the decoders;
* for WAV/AIFF: does the header promise more audio bytes than the file holds? libsndfile silently
  shortens such files, so this is the only way to tell a truncated WAV from a short one;
* for MP3: does the first frame carry a Xing/Info/VBRI tag? Without one, the frame count that
  libsndfile reports is an estimate from the bit rate, and must be counted by decoding.
"""

from __future__ import annotations

import dataclasses
import struct
from pathlib import Path

#: Bytes read from the start of the file (and again after a leading ID3 tag).
HEADER_BYTES = 4096
#: Most chunks walked in a RIFF/AIFF file before giving up looking for the audio data chunk.
MAX_CHUNKS = 64
#: RIFF data sizes that streaming writers put in place of the real size.
UNKNOWN_SIZE_SENTINELS = (0, 0xFFFFFFFF)
#: Bytes after the MPEG sync word in which a Xing/Info/VBRI length tag may start.
MP3_TAG_SEARCH_BYTES = 192

# Containers recognised by a fixed magic string at offset 0 (after any ID3 tag).
_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"fLaC", "flac"),
    (b"OggS", "ogg"),
    (b"\x1a\x45\xdf\xa3", "matroska"),
    (b"caff", "caf"),
    (b".snd", "au"),
    (b"\x30\x26\xb2\x75\x8e\x66\xcf\x11", "asf"),
    (b"#!AMR", "amr"),
    (b"MAC ", "ape"),
    (b"wvpk", "wavpack"),
    (b"MPCK", "musepack"),
    (b"DSD ", "dsf"),
    (b"riff\x2e\x91\xcf\x11", "w64"),
    (b"\x0b\x77", "ac3"),
)

# Content known not to be audio, by a magic string at offset 0: (magic, what it is).
_NOT_AUDIO_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"\x89PNG\r\n\x1a\n", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"GIF87a", "a GIF image"),
    (b"GIF89a", "a GIF image"),
    (b"II*\x00", "a TIFF image"),
    (b"MM\x00*", "a TIFF image"),
    (b"8BPS", "a Photoshop image"),
    (b"%PDF-", "a PDF document"),
    (b"PK\x03\x04", "a ZIP archive (or a document packed as one)"),
    (b"\x1f\x8b\x08", "a gzip archive"),
    (b"BZh", "a bzip2 archive"),
    (b"\xfd7zXZ\x00", "an xz archive"),
    (b"7z\xbc\xaf\x27\x1c", "a 7-Zip archive"),
    (b"\x28\xb5\x2f\xfd", "a Zstandard archive"),
    (b"\x7fELF", "an executable (ELF)"),
    (b"SQLite format 3\x00", "an SQLite database"),
    (b"PAR1", "a Parquet file"),
    (b"\x93NUMPY", "a NumPy array"),
    (b"MThd", "a MIDI file (notes, not audio)"),
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", "a Microsoft compound document (e.g. Thumbs.db, .doc)"),
)
# ISO-BMFF brands (bytes 8..12 of an ``ftyp`` box) of still-image formats, not audio/video.
_IMAGE_BRANDS = frozenset({b"heic", b"heix", b"heim", b"heis", b"mif1", b"msf1", b"avif", b"avis"})
# Control bytes that plain text may hold (tab, newline, vertical tab, form feed, carriage return, escape).
_TEXT_CONTROL_BYTES = frozenset(b"\t\n\x0b\x0c\r\x1b")

# Codec identification packets at the start of the first Ogg page.
_OGG_CODECS: tuple[tuple[bytes, str], ...] = (
    (b"\x01vorbis", "vorbis"),
    (b"OpusHead", "opus"),
    (b"\x7fFLAC", "flac"),
    (b"Speex   ", "speex"),
)


@dataclasses.dataclass(frozen=True)
class Sniffed:
    """What the first bytes of a file say.

    ``data_end`` is the byte offset where the header says the audio data ends (WAV/AIFF only),
    ``file_size`` the real size; ``data_end > file_size`` means the file was truncated.
    ``looks_like`` says what an ``unknown`` file is when its content is known not to be audio
    (``"a PNG image"``, ``"text"``, ...); ``None`` when it may be audio.
    """

    container: str
    codec_hint: str | None = None
    file_size: int = 0
    data_end: int | None = None
    mp3_length_tag: bool = False
    looks_like: str | None = None

    @property
    def known(self) -> bool:
        return self.container != "unknown"

    @property
    def truncated_bytes(self) -> int:
        """How many promised audio bytes are missing (0 if none or unknown)."""
        if self.data_end is None:
            return 0
        return max(0, self.data_end - self.file_size)


def sniff_file(path: str | Path) -> Sniffed:
    """Inspect the header of ``path`` (raises ``OSError`` if it cannot be read)."""
    with open(path, "rb") as handle:
        handle.seek(0, 2)
        size = handle.tell()
        handle.seek(0)
        head = handle.read(HEADER_BYTES)
        offset = _id3_length(head)
        if offset:
            handle.seek(offset)
            head = handle.read(HEADER_BYTES)
        return _sniff_head(handle, head, offset, size)


def _id3_length(head: bytes) -> int:
    """Length of a leading ID3v2 tag (0 if none); the size is a 28-bit "syncsafe" integer."""
    if len(head) < 10 or head[:3] != b"ID3":
        return 0
    size = 0
    for byte in head[6:10]:
        size = (size << 7) | (byte & 0x7F)
    has_footer = bool(head[5] & 0x10)
    return 10 + size + (10 if has_footer else 0)


def _sniff_head(handle, head: bytes, offset: int, size: int) -> Sniffed:
    if head[:4] == b"RIFF" and head[8:12] == b"WAVE":
        return Sniffed("wav", file_size=size, data_end=_chunk_data_end(handle, 12, "<I", b"data"))
    if head[:4] == b"RF64" and head[8:12] == b"WAVE":
        return Sniffed("rf64", file_size=size)
    if head[:4] == b"RIFF" and head[8:12] == b"AVI ":  # video, usually with an audio stream
        return Sniffed("avi", file_size=size)
    if head[:4] == b"FORM" and head[8:12] in (b"AIFF", b"AIFC"):
        return Sniffed("aiff", file_size=size, data_end=_chunk_data_end(handle, 12, ">I", b"SSND"))
    if len(head) >= 12 and head[4:8] == b"ftyp":
        if head[8:12] in _IMAGE_BRANDS:
            return Sniffed("unknown", file_size=size, looks_like="a HEIF/AVIF image")
        return Sniffed("mp4", file_size=size)
    for magic, name in _MAGIC:
        if head.startswith(magic):
            hint = _ogg_codec(head) if name == "ogg" else None
            return Sniffed(name, codec_hint=hint, file_size=size)
    mpeg = _mpeg_kind(head)
    if mpeg == "aac":
        return Sniffed("aac", codec_hint="aac", file_size=size)
    if mpeg == "mp3":
        tag_zone = head[4 : 4 + MP3_TAG_SEARCH_BYTES]
        tagged = any(tag in tag_zone for tag in (b"Xing", b"Info", b"VBRI"))
        return Sniffed("mp3", file_size=size, mp3_length_tag=tagged)
    return Sniffed("unknown", file_size=size, looks_like=None if offset else not_audio_kind(head))


def not_audio_kind(head: bytes) -> str | None:
    """What ``head`` (the first bytes of a file that no audio check matched) is, if it is known
    not to be audio: an image, an archive, a document, text, ...; ``None`` otherwise."""
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "a WebP image"
    for magic, kind in _NOT_AUDIO_MAGIC:
        if head.startswith(magic):
            return kind
    return "text" if _is_text(head) else None


def _is_text(head: bytes) -> bool:
    """Text in any 8-bit encoding (ASCII, UTF-8, Latin-1, ...): no NUL or other control bytes.

    Encoded audio is dense binary: in a few KiB of it, control bytes are all but certain.
    """
    return bool(head) and not any(byte < 0x20 and byte not in _TEXT_CONTROL_BYTES for byte in head)


def _ogg_codec(head: bytes) -> str | None:
    for marker, codec in _OGG_CODECS:
        if marker in head[:512]:
            return codec
    return None


def _mpeg_kind(head: bytes) -> str | None:
    """``"mp3"`` for an MPEG-1/2 audio frame header, ``"aac"`` for ADTS, else ``None``."""
    if len(head) < 4 or head[0] != 0xFF or (head[1] & 0xE0) != 0xE0:
        return None
    version = (head[1] >> 3) & 0x3
    layer = (head[1] >> 1) & 0x3
    if layer == 0:  # ADTS: MPEG-4/2 AAC, the layer bits are always 00
        return "aac" if (head[1] & 0xF6) == 0xF0 else None
    bitrate_index = head[2] >> 4
    rate_index = (head[2] >> 2) & 0x3
    if version == 1 or bitrate_index == 0xF or rate_index == 0x3:  # reserved values
        return None
    return "mp3"


def _chunk_data_end(handle, start: int, size_format: str, wanted: bytes) -> int | None:
    """Walk RIFF/IFF chunks from ``start`` and return where chunk ``wanted`` claims to end."""
    position = start
    for _ in range(MAX_CHUNKS):
        handle.seek(position)
        header = handle.read(8)
        if len(header) < 8:
            return None
        chunk_id = header[:4]
        (chunk_size,) = struct.unpack(size_format, header[4:8])
        if chunk_id == wanted:
            if chunk_size in UNKNOWN_SIZE_SENTINELS:
                return None
            return position + 8 + chunk_size
        # Chunks are padded to an even length in both RIFF and IFF.
        position += 8 + chunk_size + (chunk_size & 1)
    return None
