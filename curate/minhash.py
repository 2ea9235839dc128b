"""Vectorized MinHash signatures: many documents at once, no per-token Python loops.

The pipeline works on the raw UTF-8 bytes of a whole batch of documents:

1. tokens are maximal runs of word bytes (ASCII letters, digits, ``_``, and any
   non-ASCII byte, so accented and CJK text stays inside tokens); text is
   lower-cased first;
2. each token is hashed from its bytes, read 8 at a time as little-endian uint64
   words (one gather per token; longer tokens fold in further chunks), mixed with
   its length by the MurmurHash3 64-bit finalizer; nothing calls Python's
   ``hash()``, so signatures are identical across runs and machines;
3. word ``k``-shingles are hashed from ``k`` consecutive token hashes (a
   document shorter than ``k`` tokens gets one shingle of all its tokens);
4. the 32-bit shingle hashes go through datasketch's ``affine32`` permutations
   (``fmix32`` pre-mix, then ``a*h + b mod 2^32`` with ``a, b`` drawn exactly as
   ``datasketch.MinHash(num_perm, seed)`` draws them) and the row-wise minimum
   per document is ``np.minimum.reduceat`` over cache-sized blocks.

Step 4 is bit-for-bit datasketch's scheme: feeding the same shingle hashes to
``datasketch.MinHash(..., hashfunc=lambda h: h).update`` gives the same
signature, so the signatures drop into ``datasketch.MinHashLSH`` unchanged.

>>> sig = minhash_signatures(["the cat sat on the mat today", "the cat sat on the mat today"],
...                          num_perm=16, shingle_size=3)
>>> sig.shape, bool((sig[0] == sig[1]).all())
((2, 16), True)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

EMPTY = np.uint32(0xFFFFFFFF)  # the signature value of a document with no tokens

_M64 = np.uint64
_FMIX64 = (_M64(33), _M64(0xFF51AFD7ED558CCD), _M64(33), _M64(0xC4CEB9FE1A85EC53), _M64(33))
_FMIX32 = (np.uint32(16), np.uint32(0x85EBCA6B), np.uint32(13), np.uint32(0xC2B2AE35), np.uint32(16))

def odd_keys(seed: int, n: int) -> np.ndarray:
    """`n` fixed odd (so invertible) uint64 multipliers from `seed`.

    From a legacy RandomState, whose stream numpy guarantees across versions,
    so hashes keyed by them are the same on every machine.
    """
    return np.random.RandomState(seed).randint(0, 1 << 62, size=n, dtype=np.uint64) * _M64(2) + _M64(1)


# fixed keys of the token and shingle hashes
_KEYS = odd_keys(0x7E5E, 96)
_CHUNK_KEYS = _KEYS[:63]  # 8-byte chunk number (mod 63) within a long token -> key
_LENGTH_KEY = _KEYS[63]  # multiplies a token's byte length
_SHINGLE_KEYS = _KEYS[64:]  # token position within a shingle -> key
MAX_SHINGLE = len(_SHINGLE_KEYS)
# _LOW_BYTES[k]: the low k bytes of a little-endian uint64 (k = 8: all of it)
_LOW_BYTES = np.array([(1 << (8 * k)) - 1 for k in range(9)], dtype=np.uint64)

# shingles per block of the permutation step: (num_perm, block) uint32 stays in cache
_BLOCK_SHINGLES = 4096


def _fmix64(h: np.ndarray) -> np.ndarray:
    s1, m1, s2, m2, s3 = _FMIX64
    h = h ^ (h >> s1)
    h *= m1
    h ^= h >> s2
    h *= m2
    h ^= h >> s3
    return h


def _fmix32(h: np.ndarray) -> np.ndarray:
    s1, m1, s2, m2, s3 = _FMIX32
    h = h ^ (h >> s1)
    h *= m1
    h ^= h >> s2
    h *= m2
    h ^= h >> s3
    return h


def permutations(num_perm: int, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """The ``(a, b)`` uint32 parameters datasketch's affine32 MinHash uses for ``seed``.

    >>> from datasketch import MinHash
    >>> a, b = permutations(8, seed=3)
    >>> bool((MinHash(8, seed=3).permutations == np.array([a, b])).all())
    True
    """
    gen = np.random.RandomState(seed)
    a = gen.randint(0, 1 << 31, num_perm, dtype=np.uint32) * np.uint32(2) + np.uint32(1)
    b = gen.randint(0, 1 << 32, num_perm, dtype=np.uint32)
    return a, b


@dataclass(frozen=True)
class Shingles:
    """32-bit shingle hashes of a batch, grouped by document (CSR layout)."""

    hashes: np.ndarray  # uint32 (or uint64), all shingles of all documents in document order
    offsets: np.ndarray  # int64, len n_docs + 1: document i owns hashes[offsets[i]:offsets[i+1]]

    @property
    def counts(self) -> np.ndarray:
        return np.diff(self.offsets)


def _utf8_bytes(texts: Sequence[str | None] | pa.Array | pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray]:
    """Lower-cased UTF-8 bytes of all texts concatenated, and the per-text byte offsets."""
    arr = texts if isinstance(texts, pa.Array | pa.ChunkedArray) else pa.array(texts, type=pa.large_string())
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks() if arr.num_chunks else pa.array([], type=pa.large_string())
    arr = pc.utf8_lower(arr.cast(pa.large_string())).fill_null("")
    offsets = np.frombuffer(arr.buffers()[1], dtype=np.int64)[arr.offset : arr.offset + len(arr) + 1]
    data_buf = arr.buffers()[2]
    data = np.frombuffer(data_buf, dtype=np.uint8) if data_buf is not None else np.zeros(0, np.uint8)
    data = data[offsets[0] : offsets[-1]]
    return data, offsets - offsets[0]


def _word_bytes(data: np.ndarray) -> np.ndarray:
    """Is each (lower-cased UTF-8) byte part of a word: ASCII letter, digit, ``_`` or non-ASCII."""
    w = (data - np.uint8(ord("a"))) < 26  # uint8 wrap-around: one compare per range
    w |= (data - np.uint8(ord("0"))) < 10
    w |= (data - np.uint8(ord("A"))) < 26
    w |= data >= 0x80
    w |= data == ord("_")
    return w


def token_hashes(texts: Sequence[str | None] | pa.Array | pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray]:
    """64-bit hashes of every token of every text, and per-text token offsets (CSR).

    A token's bytes are read 8 at a time as little-endian uint64 words (one
    unaligned gather per token and 8-byte chunk, not one operation per byte);
    a token of up to 8 bytes is its word plus a multiple of its length, so
    distinct tokens of the same length up to 8 bytes never collide; longer
    tokens fold in further chunks with a keyed MurmurHash3 finalizer.

    >>> h, off = token_hashes(["a b a", "", "B"])
    >>> off.tolist(), bool(h[0] == h[2]), bool(h[1] == h[3])
    ([0, 3, 3, 4], True, True)
    """
    data, doc_off = _utf8_bytes(texts)
    n = len(data)
    is_word = _word_bytes(data)
    # edge[i]: a token may start at byte i / end before it (word-ness changes, or a text starts)
    edge = np.empty(n + 1, dtype=bool)
    edge[0] = edge[n] = True
    np.not_equal(is_word[1:], is_word[:-1], out=edge[1:n])
    edge[doc_off[1:-1]] = True
    start = np.flatnonzero(edge[:-1] & is_word)
    length = np.flatnonzero(edge[1:] & is_word) + 1 - start
    padded = np.zeros(n + 8, dtype=np.uint8)
    padded[:n] = data
    words = np.ndarray((n,), dtype="<u8", buffer=padded, strides=(1,))  # words[i]: bytes i..i+7
    h = words[start] & _LOW_BYTES[np.minimum(length, 8)]
    long = np.flatnonzero(length > 8)
    chunk = 1
    while len(long):  # a loop over 8-byte chunks of the few long tokens, not over bytes
        part = words[start[long] + 8 * chunk] & _LOW_BYTES[np.minimum(length[long] - 8 * chunk, 8)]
        part *= _CHUNK_KEYS[chunk % len(_CHUNK_KEYS)]
        h[long] = _fmix64(h[long] ^ part)
        chunk += 1
        long = long[length[long] > 8 * chunk]
    h += length.astype(np.uint64) * _LENGTH_KEY
    h = _fmix64(h)
    return h, np.searchsorted(start, doc_off, side="left").astype(np.int64)


def shingle_hashes(texts: Sequence[str | None] | pa.Array | pa.ChunkedArray, shingle_size: int = 5) -> Shingles:
    """Word ``shingle_size``-gram hashes (uint32) of every text, grouped per text.

    A text with fewer tokens than ``shingle_size`` gets one shingle of all its
    tokens; a text with no tokens gets none.

    >>> s = shingle_hashes(["one two three four", "x"], shingle_size=3)
    >>> s.counts.tolist()
    [2, 1]
    """
    h64 = shingle_hashes64(texts, shingle_size)
    return Shingles((h64.hashes >> _M64(32)).astype(np.uint32), h64.offsets)


def shingle_hashes64(texts: Sequence[str | None] | pa.Array | pa.ChunkedArray, shingle_size: int = 5) -> Shingles:
    """Like `shingle_hashes`, with 64-bit hashes (for exact n-gram set membership)."""
    if not 1 <= shingle_size <= MAX_SHINGLE:
        raise ValueError(f"shingle_size must be in [1, {MAX_SHINGLE}], got {shingle_size}")
    k = shingle_size
    th, tok_off = token_hashes(texts)
    n_tok = len(th)
    tok_count = np.diff(tok_off)
    # a text with c >= k tokens has shingles starting at its tokens 0..c-k; one with 0 < c < k has one
    counts = np.where(tok_count >= k, tok_count - k + 1, np.minimum(tok_count, 1))
    offsets = np.zeros(len(tok_off), np.int64)
    np.cumsum(counts, out=offsets[1:])
    first_tok = np.arange(offsets[-1], dtype=np.int64)  # each shingle's first token
    first_tok += np.repeat(tok_off[:-1] - offsets[:-1], counts)
    padded = np.zeros(n_tok + k, np.uint64)
    padded[:n_tok] = th
    acc = padded[first_tok] * _SHINGLE_KEYS[0]
    for j in range(1, k):  # a loop over shingle positions, not tokens
        acc += padded[first_tok + j] * _SHINGLE_KEYS[j]
    short = np.flatnonzero((tok_count > 0) & (tok_count < k))
    for j in range(1, k):  # take back out the tokens past the end of a short text
        rows = offsets[short[tok_count[short] <= j]]
        acc[rows] -= padded[first_tok[rows] + j] * _SHINGLE_KEYS[j]
    return Shingles(_fmix64(acc), offsets)


def signatures_from_shingles(shingles: Shingles, num_perm: int = 128, seed: int = 1) -> np.ndarray:
    """(n_docs, num_perm) uint32 MinHash signatures; rows of shingle-less docs are all EMPTY.

    Bit-identical to ``datasketch.MinHash(num_perm, seed, hashfunc=lambda h: h)``
    updated with the same shingle hashes.
    """
    a, b = permutations(num_perm, seed)
    n_docs = len(shingles.offsets) - 1
    sig = np.full((n_docs, num_perm), EMPTY, dtype=np.uint32)
    counts = shingles.counts
    nonempty = np.flatnonzero(counts > 0)
    if len(nonempty) == 0:
        return sig
    mixed = _fmix32(shingles.hashes)
    # Blocks of whole documents with about _BLOCK_SHINGLES shingles each. The block is
    # laid out (num_perm, shingles) so that the multiply and the per-document
    # minimum both run along contiguous rows: ~10x faster than (shingles, num_perm).
    starts = shingles.offsets[nonempty]
    cuts = np.searchsorted(starts, np.arange(0, starts[-1] + 1, _BLOCK_SHINGLES), side="left")
    cuts = np.unique(np.append(cuts, len(nonempty)))
    a_col, b_col = a[:, None], b[:, None]
    buf = np.empty((num_perm, 2 * _BLOCK_SHINGLES), dtype=np.uint32)
    for lo, hi in zip(cuts[:-1], cuts[1:], strict=True):
        docs = nonempty[lo:hi]
        s0, s1 = shingles.offsets[docs[0]], shingles.offsets[docs[-1] + 1]
        block = buf[:, : s1 - s0] if s1 - s0 <= buf.shape[1] else np.empty((num_perm, s1 - s0), np.uint32)
        np.multiply(a_col, mixed[None, s0:s1], out=block)
        block += b_col
        sig[docs] = np.minimum.reduceat(block, shingles.offsets[docs] - s0, axis=1).T
    return sig


def minhash_signatures(
    texts: Sequence[str | None] | pa.Array | pa.ChunkedArray,
    *,
    num_perm: int = 128,
    shingle_size: int = 5,
    seed: int = 1,
    batch_size: int = 512,
) -> np.ndarray:
    """MinHash signatures (n, num_perm) uint32 of ``texts``, computed ``batch_size`` texts at a time.

    >>> s = minhash_signatures(["a b c d e f", "a b c d e g", "zz yy xx ww vv uu"], num_perm=64,
    ...                        shingle_size=2)
    >>> float((s[0] == s[1]).mean()) > float((s[0] == s[2]).mean())
    True
    """
    if num_perm < 1:
        raise ValueError(f"num_perm must be positive, got {num_perm}")
    arr = texts if isinstance(texts, pa.Array | pa.ChunkedArray) else pa.array(texts, type=pa.large_string())
    n = len(arr)
    out = np.empty((n, num_perm), dtype=np.uint32)
    for lo in range(0, n, batch_size):
        out[lo : lo + batch_size] = signatures_from_shingles(
            shingle_hashes(arr.slice(lo, batch_size), shingle_size), num_perm, seed
        )
    return out
