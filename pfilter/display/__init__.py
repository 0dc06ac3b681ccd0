"""Packet lines as `tcpdump -n` 4.99 prints them, for the command's output without -w.

A Printer holds tcpdump's display flags (-e, -t..-ttttt, -x/-xx/-X/-XX, -A/-AA, -S, -#, -v, -q)
and the per-connection TCP state behind relative sequence numbers; `write_batch` prints the
selected packets of a PacketBatch into a text stream, reading only those packets' bytes (the
packets skipped never become Python objects) and writing one buffered block per batch.

Speed: with the default flags (and -t, -tt, -tttt) an Ethernet batch goes through `_fast`, a
compiled printer for the common lines (ARP, IPv4/IPv6 TCP and UDP, ICMP echo, the text
protocols' first lines, NTP, syslog, ICMPv6 neighbour discovery), which hands every other
packet back to the Python printer below, in packet order and with the same TCP state;
tests/test_display_fastpath.py holds the two to the same text.

Layers: `link` (Ethernet, VLAN, MPLS, Linux cooked v1/v2, NULL/LOOP, raw IP, PPP, Cisco HDLC,
NFLOG), `net` (ARP, IPv4, IPv6 and extension headers, ICMP, ICMPv6, IGMP, ESP/AH),
`transport` (TCP, UDP), `apps` (DNS, NTP, BOOTP/DHCP, HTTP and other text protocols). tcpdump's
wording is reproduced by own code (dpkt's objects do not carry it). Link types without a
printer get tcpdump's `UNSUPPORTED` line with the packet in hex and ASCII. Nothing raises on a
damaged packet: a printer that runs off the captured bytes ends the line with '[|proto]'. A
printer's exception (a bug) ends the line with ' [|pfilter]' and the packet in hex, or is raised
when $PFILTER_DISPLAY_STRICT is set (the test suite sets it: tests/conftest.py).

Imports the standard library and this package only (numpy for the compiled printer's arrays).
"""
import os
import time

from . import apps, link
from ._util import ascii_dump, hex_lines
from ..capture.files import MAXIMUM_SNAPLEN

try:
    from . import _fast
except ImportError:         # not built (a source checkout without the extension): Python only
    _fast = None
else:
    # apps.TCP_PORTS's handlers, as the compiled printer needs to know them: 22 prints SSH's banner
    # only (a payload starting "SSH-"), 23 (telnet) nothing, the others a summary of their own
    # only (a payload starting "SSH-"), 23 (telnet) nothing, the text protocols their first line
    # (written in C too), the others a summary of their own; UDP: NTP, syslog, DNS in C too
    _fast.set_app_ports({port: {22: 2, 23: 3, 80: 4, 8080: 4, 25: 5, 21: 6, 43: 7, 554: 8, 8554: 8}.get(port, 1)
                         for port in apps.TCP_PORTS},
                        {port: {123: 2, 514: 3, 53: 4, 5353: 5}.get(port, 1) for port in apps.UDP_APP_PORTS})
    _fast.set_dns_names(apps.DNS_OPS, apps.DNS_RCODES, apps.DNS_TYPES, apps.DNS_CLASSES)
    _fast.set_text_commands(apps.HTTP_CMDS, apps.RTSP_CMDS)

__all__ = ["Printer", "describe", "summary", "format_time", "batch_lines", "file_warnings"]

#: set (to anything but "" or "0") to have a printer's exception raised instead of ending the line
#: with " [|pfilter]"; the test suite sets it (tests/conftest.py, inherited by the commands it
#: runs), so that no test can pass over a packet line that a printer bug cut short
STRICT_ENV = "PFILTER_DISPLAY_STRICT"


def _strict():
    flag = os.environ.get(STRICT_ENV, "")
    return flag not in ("", "0")


from ..linktypes import file_warnings  # noqa: E402,F401  (the command's, re-exported)


#: tcpdump 4.99 prints "[Error converting time]" for seconds whose low 32 bits have the top bit
#: set (1901..1970, 2038..2106, ...); -tt prints the low 32 bits
_TIME_ERROR = "[Error converting time]"


def _hms(sec):
    try:
        tm = time.localtime(sec)
    except (OverflowError, OSError, ValueError):
        return None
    return tm


class Printer:
    """tcpdump's display flags and state. Counts as tcpdump counts them: e (-e), t (number of
    -t: 1 no time, 2 seconds since 1970, 3 delta from the previous packet, 4 date and time,
    5 delta from the first packet), x (-x 1, -xx 2), X (-X 1, -XX 2), A (-A 1, -AA 2),
    S (absolute sequence numbers), number (-#), v (-v count), q (quick output),
    K (-K: no IP/TCP/UDP checksum verification: under -v no IPv4 header "bad cksum", no TCP
    ", cksum 0x...." and no UDP "[udp sum ok]", "[bad udp cksum ...]" or "[no cksum]"; ICMP's,
    ICMPv6's and the other protocols' checks stay, as tcpdump 4.99's -K leaves them);
    resolution "us" or "ns" (tcpdump --nano); snaplen the capture's (kept for callers: a record
    is judged against tcpdump's own limit, MAXIMUM_SNAPLEN)."""

    def __init__(self, e=0, t=0, x=0, X=0, A=0, S=False, number=False, v=0, q=False,
                 resolution="us", snaplen=None, K=False):
        self.e, self.t, self.x, self.X, self.A = int(e), int(t), int(x), int(X), int(A)
        self.S, self.number, self.v, self.q = bool(S), bool(number), int(v), bool(q)
        self.K = bool(K)
        self.resolution = resolution
        self.snaplen = snaplen
        self.tcp_seq = {}
        self.count = 0
        self._prev_ns = None
        self._first_ns = None
        self._sec_cache = (None, "")

    # ------------------------------------------------------------------ time stamps

    def _frac(self, ns):
        return f"{ns:09d}" if self.resolution == "ns" else f"{ns // 1000:06d}"

    def _clock(self, sec):
        cached_sec, text = self._sec_cache
        if sec == cached_sec:
            return text
        tm = None if sec & 0x80000000 else _hms(sec)
        if tm is None:
            text = _TIME_ERROR
        elif self.t == 4:
            text = f"{tm.tm_year:04d}-{tm.tm_mon:02d}-{tm.tm_mday:02d} {tm.tm_hour:02d}:{tm.tm_min:02d}:{tm.tm_sec:02d}"
        else:
            text = f"{tm.tm_hour:02d}:{tm.tm_min:02d}:{tm.tm_sec:02d}"
        self._sec_cache = (sec, text)
        return text

    def _delta(self, d):
        """A -ttt/-ttttt delta as tcpdump prints it: a sign (' ' or '-'), then the time of day
        of the delta taken as seconds since 1970 in UTC (whole days dropped)."""
        sign = " "
        if d < 0:
            sign, d = "-", -d
        sec, frac = divmod(d, 1_000_000_000)
        if sec & 0x80000000:
            return f"{sign}{_TIME_ERROR} "
        return f"{sign}{sec // 3600 % 24:02d}:{sec % 3600 // 60:02d}:{sec % 60:02d}.{self._frac(frac)} "

    def stamp(self, ts_ns):
        """The time stamp as tcpdump prints it before a packet, with its trailing space."""
        t = self.t
        if t == 1:
            return ""
        if self.resolution != "ns":
            ts_ns -= ts_ns % 1000
        # -ttt and -ttttt: tcpdump's reference is "not set" while it is zero (no packet yet, or
        # a packet stamped 0, as every pcapng simple packet block is): the packet is its own
        if t == 3:
            prev = self._prev_ns if self._prev_ns else ts_ns
            self._prev_ns = ts_ns
            return self._delta(ts_ns - prev)
        if t == 5:
            if not self._first_ns:
                self._first_ns = ts_ns
            return self._delta(ts_ns - self._first_ns)
        sec, frac = divmod(ts_ns, 1_000_000_000)
        if sec & 0x80000000:
            return _TIME_ERROR + " "
        if t == 2:
            return f"{sec & 0xFFFFFFFF}.{self._frac(frac)} "
        clock = self._clock(sec)
        return clock + " " if clock == _TIME_ERROR else f"{clock}.{self._frac(frac)} "

    # ------------------------------------------------------------------ packets

    def describe(self, packet, linktype, wirelen=None):
        """(text after the time stamp, link-header length) for one packet."""
        wirelen = len(packet) if wirelen is None else int(wirelen)
        text, hdrlen = self._link(linktype, packet, wirelen)
        if text is None:
            return "UNSUPPORTED" + hex_lines(packet, True), 0
        return text, min(hdrlen, len(packet))

    def _link(self, linktype, packet, wirelen):
        """link.describe, with the safety net: a printer's exception (a pfilter bug) ends the line
        with " [|pfilter]" and the packet in hex, so that the line and its bytes still show;
        raised instead under PFILTER_DISPLAY_STRICT."""
        try:
            return link.describe(self, linktype, packet, wirelen)
        except Exception:
            if _strict():
                raise
            return " [|pfilter]" + hex_lines(packet, True), len(packet)

    def format(self, packet, linktype, ts_ns, wirelen=None):
        """One packet's full text (its lines, without the final newline), as tcpdump -n."""
        self.count += 1
        if type(packet) is not bytes:
            packet = bytes(packet)
        caplen = len(packet)
        wirelen = caplen if wirelen is None else int(wirelen)
        if not caplen or wirelen < caplen or not wirelen or caplen > MAXIMUM_SNAPLEN or wirelen > MAXIMUM_SNAPLEN:
            return self._invalid(caplen, wirelen)
        head = f"{self.count:5d}  " if self.number else ""
        head += self.stamp(int(ts_ns))
        text, hdrlen = self._link(linktype, packet, wirelen)
        if text is None:
            text, hdrlen = "UNSUPPORTED" + hex_lines(packet, True), 0   # -x shows it again, as tcpdump
        if self.X:
            data = packet if self.X > 1 else packet[hdrlen:]
            text += hex_lines(data, True)
        elif self.x:
            data = packet if self.x > 1 else packet[hdrlen:]
            text += hex_lines(data, False)
        elif self.A:
            data = packet if self.A > 1 else packet[hdrlen:]
            if data:
                text += ascii_dump(data)
        return head + text

    def _invalid(self, caplen, wirelen):
        """tcpdump's line for a record whose header cannot be right (no time stamp, no decoding)."""
        bad = []
        if caplen == 0:
            bad.append(" caplen==0")
        if wirelen == 0:
            bad.append(" len==0")
        elif wirelen < caplen:
            bad.append(f" len({wirelen}) < caplen({caplen})")
        if caplen > MAXIMUM_SNAPLEN:         # (tcpdump 4.99's limits, whatever the file's)
            bad.append(f" caplen({caplen}) > {MAXIMUM_SNAPLEN}")
        if wirelen > MAXIMUM_SNAPLEN:
            bad.append(f" len({wirelen}) > {MAXIMUM_SNAPLEN}")
        return "[Invalid header:" + ",".join(bad) + "]"

    def _fast_ok(self, batch):
        """Whether the compiled printer (pfilter.display._fast) takes this batch: Ethernet, and
        no display flag but a stateless time stamp form."""
        if not (_fast is not None and batch.linktypes is None and batch.linktype == 1 and self.t in (0, 1, 2, 4)
                and not (self.e or self.x or self.X or self.A or self.v or self.q or self.number)):
            return False
        if self.t == 1 or not len(batch.timestamps):
            return True
        # times tcpdump cannot print ("[Error converting time]") or prints modulo 2**32: Python
        sec = batch.timestamps // 1_000_000_000
        return int(sec.min()) >= 0 and int(sec.max()) < 0x80000000

    def _write_fast(self, batch, indices, out):
        import numpy as np
        if isinstance(indices, range):
            idx = np.arange(indices.start, indices.stop, indices.step, dtype=np.int64)
        else:
            idx = np.asarray(indices)
            idx = np.flatnonzero(idx) if idx.dtype == bool else np.ascontiguousarray(idx, dtype=np.int64)
        if not len(idx):
            return
        offsets = np.ascontiguousarray(batch.offsets, dtype=np.int64)
        caplens = np.ascontiguousarray(batch.caplen, dtype=np.uint32)
        wirelens = np.ascontiguousarray(batch.wirelen, dtype=np.uint32)
        stamps = np.ascontiguousarray(batch.timestamps, dtype=np.int64)
        data = np.ascontiguousarray(batch.data, dtype=np.uint8)
        view = memoryview(data)
        fmt = self.format

        def slow(i):
            o = int(offsets[i])
            return fmt(view[o:o + int(caplens[i])].tobytes(), 1, int(stamps[i]), int(wirelens[i]))
        text = _fast.format_batch(data, offsets, caplens, wirelens, stamps, idx, self.t, self.resolution == "ns",
                                  None if self.S else self.tcp_seq, slow, MAXIMUM_SNAPLEN)
        raw = getattr(out, "buffer", None)
        if raw is not None and (getattr(out, "encoding", "") or "").lower().replace("-", "") == "utf8":
            out.flush()                 # the bytes go under the text layer, in order
            raw.write(text)
        else:
            out.write(text.decode("utf-8", "surrogateescape"))

    def write_batch(self, batch, indices, out):
        """Print the packets `indices` of a PacketBatch to the text stream `out` (one write).
        Only those packets' bytes are read; their fields come from the batch's arrays at once.
        Ethernet batches printed with the default flags go through the compiled printer, which
        hands it back the packets it does not write itself."""
        if self._fast_ok(batch):
            return self._write_fast(batch, indices, out)
        if isinstance(indices, range) and indices.step == 1:
            sel = slice(indices.start, indices.stop)
        else:
            sel = indices if hasattr(indices, "dtype") else list(indices)
        offsets = batch.offsets[sel].tolist()
        caplens = batch.caplen[sel].tolist()
        wirelens = batch.wirelen[sel].tolist()
        stamps = batch.timestamps[sel].tolist()
        lts = [batch.linktype] * len(offsets) if batch.linktypes is None else batch.linktypes[sel].tolist()
        data = memoryview(batch.data)
        fmt = self.format
        parts = [fmt(data[o:o + c].tobytes(), lt, ts, w)
                 for o, c, w, ts, lt in zip(offsets, caplens, wirelens, stamps, lts)]
        if parts:
            parts.append("")
            out.write("\n".join(parts))


# ---------------------------------------------------------------------- the earlier API

def format_time(ts_ns, resolution="us"):
    """Local time of day as tcpdump prints it: HH:MM:SS.ffffff (or 9 digits for ns)."""
    return Printer(resolution=resolution).stamp(int(ts_ns)).rstrip(" ")


def describe(packet, linktype, wirelen=None):
    """The part of a tcpdump -n line after the time, for one packet of a link type."""
    return Printer().describe(bytes(packet), linktype, wirelen)[0]


def summary(packet, linktype, ts_ns, wirelen=None, resolution="us"):
    """A full tcpdump -n line: time and description."""
    return Printer(resolution=resolution).format(packet, linktype, ts_ns, wirelen)


def batch_lines(batch, indices, resolution="us", printer=None):
    """The text of each packet `indices` of a PacketBatch (one string a packet; -x dumps and
    -v's second lines inside it). Pass a Printer to keep TCP state across batches."""
    p = printer or Printer(resolution=resolution)
    for i in indices:
        i = int(i)
        yield p.format(batch.packet(i), batch.linktype_of(i), int(batch.timestamps[i]), int(batch.wirelen[i]))
