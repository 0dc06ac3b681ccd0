"""Seed inputs of the fuzz targets: the shared corpus when it is there (expressions, small captures),
and always what the repository makes itself (scripts/gen_capture.py captures in pcap and pcapng,
the head of data/sample.pcap, the compiler tests' primitives). Loaded once per worker."""
import functools
import struct
import sys
import tempfile
from pathlib import Path

import reference as ref
from test_compiler_random import PRIMITIVES

ROOT = ref.ROOT
#: corpus captures up to this size are seeds whole; larger ones give their first bytes
SEED_BYTES = 16384


@functools.lru_cache(maxsize=1)
def expressions():
    """[(link type name or number, expression)] to mutate and compose."""
    out = [("EN10MB", p) for p in PRIMITIVES]
    if ref.CORPUS.exists():
        for dlt, exprs in ref.corpus_expressions().items():
            out += [(dlt, e) for e in exprs]
        bad = ref.CORPUS / "expressions" / "bad.tsv"
        if bad.exists():
            out += [("EN10MB", line.split("\t", 1)[0]) for line in bad.read_text().splitlines() if line.strip()]
    return out


def _generated():
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        import gen_capture
    finally:
        sys.path.pop(0)
    where = Path(tempfile.mkdtemp(prefix="pfilter-fuzz-seeds-"))
    files = []
    for i, (pcapng, nano, snap) in enumerate([(False, False, 262144), (True, False, 262144),
                                              (False, True, 96), (True, True, 128)]):
        path = where / f"gen{i}"
        gen_capture.generate(path, 24, seed=i + 1, pcapng=pcapng, nanosecond=nano, snaplen=snap, templates=48)
        files.append(path.read_bytes())
        path.unlink()
    where.rmdir()
    return files


def _big_endian(pcap):
    """A little-endian microsecond pcap rewritten big-endian (header and record headers)."""
    magic, major, minor, zone, sig, snap, lt = struct.unpack_from("<IHHiIII", pcap)
    out = [struct.pack(">IHHiIII", magic, major, minor, zone, sig, snap, lt)]
    pos = 24
    while pos + 16 <= len(pcap):
        sec, frac, cap, wire = struct.unpack_from("<IIII", pcap, pos)
        out.append(struct.pack(">IIII", sec, frac, cap, wire) + pcap[pos + 16:pos + 16 + cap])
        pos += 16 + cap
    return b"".join(out)


def pcap_packets(data):
    """The packets of a little-endian pcap file, as bytes."""
    pos, out = 24, []
    while pos + 16 <= len(data):
        cap = struct.unpack_from("<I", data, pos + 8)[0]
        out.append(data[pos + 16:pos + 16 + cap])
        pos += 16 + cap
    return out


def _head(data, records):
    """The pcap header and first `records` records of a pcap file."""
    pos = 24
    for _ in range(records):
        if pos + 16 > len(data):
            break
        pos += 16 + struct.unpack_from("<I", data, pos + 8)[0]
    return data[:pos]


@functools.lru_cache(maxsize=1)
def captures():
    """[bytes] of seed capture files."""
    gen = _generated()
    sample = (ROOT / "data" / "sample.pcap").read_bytes()
    seeds = gen + [_big_endian(gen[0]), _head(sample, 12)]
    if ref.CORPUS.exists() and (ref.CORPUS / "pcaps.tsv").exists():
        for row in ref.corpus_pcaps():
            try:
                with open(row["file"], "rb") as f:
                    seeds.append(f.read(SEED_BYTES))
            except OSError:
                continue
    return seeds


def corpus_seed_count():
    return len(captures()) - 7
