"""A user's script over pfilter's public API, checked with `mypy --strict` by
tests/test_public_api.py (and run by it, to show the script is real). Every value is given the
type a user would write down, so a signature that loses its annotations fails the check."""
from __future__ import annotations

import sys
import warnings
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

import pfilter


def web_packets(src: str, dst: Path) -> int:
    prog: pfilter.Program = pfilter.compile("ip and tcp port 80", linktype="EN10MB", optimize=True)
    listing: str = prog.dump("d")
    assert listing.startswith("(000)")
    shareable: pfilter.Program = pfilter.compile("udp", optimize="shareable", netmask=0)
    assert len(shareable) > 0
    written = 0
    with pfilter.open(src) as cap:
        linktype: int = cap.linktype
        snaplen: int = cap.snaplen
        with pfilter.open(dst, "w", linktype=linktype, snaplen=snaplen, ts_resolution="ns") as out:
            for batch in cap:
                b: pfilter.PacketBatch = batch
                hits: NDArray[np.bool_] = prog.match_batch(b)
                verdicts: NDArray[np.uint32] = prog.run_batch(b)
                assert len(verdicts) == len(b)
                written += out.write(b, hits)
                first: bytes = b.packet(0) if len(b) else b""
                assert prog.run(first) >= 0
            count: int = out.packets_written
    assert count == written
    return written


def copy_all(src: str, dst: str) -> int:
    with pfilter.open(src, batch_bytes=1 << 20) as cap:
        return pfilter.write(dst, cap)


def filtered(src: str, dst: str) -> pfilter.FilterStats:
    seen: list[int] = []

    def progress(done: int, total: int, stats: pfilter.FilterStats) -> None:
        seen.append(done)

    stats = pfilter.filter_file(src, dst, "udp port 53", count=100, progress=progress)
    read: int = stats.read
    matched: int = stats.matched
    assert matched <= read
    return stats


def classified(src: str) -> dict[str, int]:
    result: pfilter.Classification = pfilter.classify(
        src, {"web": "tcp port 80 or tcp port 443", "dns": "port 53"}, default="other")
    counts: NDArray[np.int64] = result.counts
    labels: NDArray[np.str_] | NDArray[np.object_] = result.labels()
    assert len(labels) == result.packets
    return {name: int(n) for name, n in zip(result.rules, counts)}


def errors() -> str:
    try:
        pfilter.compile("tcp port")
    except pfilter.FilterSyntaxError as e:
        where: int = e.position
        return f"{e.message} at {where}"
    except pfilter.FilterError:
        raise
    return ""


def damaged(src: str) -> int:
    warnings.simplefilter("ignore", pfilter.RuleLinkTypeWarning)
    try:
        pfilter.classify(src, ["tcp"], counts_only=True)
    except pfilter.CaptureFormatError as e:
        offset: int | None = e.offset
        partial: pfilter.Classification | None = e.partial
        return partial.packets if partial is not None else 0
    except FileNotFoundError:
        return -1
    return 0


def main(argv: list[str]) -> int:
    src, outdir = argv[1], Path(argv[2])
    n = web_packets(src, outdir / "web.pcap")
    assert copy_all(src, str(outdir / "all.pcapng")) > 0
    stats = filtered(src, str(outdir / "dns.pcap"))
    table = classified(src)
    built = pfilter.PacketBatch.from_packets([b"\x00" * 60], linktype=1)
    assert pfilter.write(outdir / "one.pcap", built) == 1
    assert damaged(str(outdir / "missing.pcap")) == -1
    print(n, stats.written, table["web"], errors())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
