"""pfilter's printed lines against `tcpdump -n -r`'s over the public capture corpus (issue 16):
per link type and flag set (-n, -n -e, -n -tttt, -n -x, -n -v), the share of identical lines
for the first PACKETS packets of every capture tcpdump reads, twice: over all the lines, and over
the lines of the packets in issue 16's scope (scripts/display_agreement.py, SCOPE_LINKTYPES and
scope_filter(): decided by libpcap's bpf_filter(), not by pfilter).

Issue 16's targets (95% on Ethernet, Linux cooked and raw IP, 80% over all captures) are asserted
on the in-scope lines. Over all the lines they are the wrong yardstick: the corpus is mostly
tcpdump's own test suite, one capture per protocol printer, so most of its lines are protocols
the issue leaves to tcpdump's generic fallback (PTP, AoE, ForCES, NFS, AFS, DECnet, Babel, IS-IS,
LLDP, GeoNet, IPX, ...); test_out_of_scope_share measures that share (more than half of the
Ethernet lines with -n). The all-lines figures are held to FLOORS, a regression guard.

Both sides run in this process's time zone. The corpus comes through tests/reference.py (skips
when absent, fails when CI=true); tcpdump is the reference binary (Debian's 4.99).
"""
import importlib.util
import io
import subprocess
import sys

import pytest

import pfilter
import reference as ref
from pfilter.display import Printer

PACKETS = 200
#: issue 16's targets: identical lines per group of link types, and over all captures; asserted
#: on the in-scope lines of every flag set
TARGETS = {"Ethernet": 0.95, "Linux cooked": 0.95, "raw IP": 0.95, "all": 0.80}
#: what pfilter reaches over all the lines today, for the worst flag set of each group (-v
#: everywhere), less a margin: a regression guard (scripts/display_agreement.py prints the table)
FLOORS = {"Ethernet": 0.42, "Linux cooked": 0.55, "raw IP": 0.94, "all": 0.44}

pytestmark = ref.needs_corpus("pcaps.tsv")


def _agreement_module():
    spec = importlib.util.spec_from_file_location("display_agreement", ref.ROOT / "scripts" / "display_agreement.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def tables():
    """(the script's module, {"all": table, "in": table})."""
    da = _agreement_module()
    rows = ref.corpus_pcaps()
    out = {}
    for key, scope in (("all", False), ("in", True)):
        out[key], _ = da.measure(rows, da.FLAG_SETS, PACKETS, ref.tcpdump(), scope=scope)
        print(f"\n{key} lines\n" + da.format_table(out[key]))
    return da, out


def _shares(da, t, group):
    """[(share, flag set, identical, total)] of every flag set for a group."""
    rows = [(same / total, flags, same, total) for flags, name, same, total in da.summarize(t)
            if name == group and total]
    assert rows, f"no {group} captures in the corpus"
    return rows


@pytest.mark.parametrize("group", list(FLOORS))
def test_share_of_lines_identical_to_tcpdump(tables, group):
    da, t = tables
    share, flags, same, total = min(_shares(da, t["all"], group))
    assert share >= FLOORS[group], (f"{group}, tcpdump {flags}: {same}/{total} lines identical "
                                    f"({100 * share:.1f}% < {100 * FLOORS[group]:.0f}%)")


@pytest.mark.parametrize("group", list(TARGETS))
def test_issue_16_target_share_in_scope(tables, group):
    da, t = tables
    for share, flags, same, total in _shares(da, t["in"], group):
        assert share >= TARGETS[group], (f"{group}, tcpdump {flags}, in-scope lines: {same}/{total} identical "
                                         f"({100 * share:.1f}% < {100 * TARGETS[group]:.0f}%)")


def test_out_of_scope_share(tables):
    """Why the all-lines target is the wrong one: the share of tcpdump's lines (-n) that belong
    to packets out of issue 16's scope, measured here; printed, and asserted to be the larger part
    of the Ethernet lines (else the all-lines figures should carry the targets instead)."""
    da, t = tables
    total = {key: {g: n for flags, g, _, n in da.summarize(t[key]) if flags == "-n"} for key in t}
    out = {g: 1 - total["in"].get(g, 0) / n for g, n in total["all"].items() if n}
    print("\nout-of-scope share of the -n lines: "
          + ", ".join(f"{g} {100 * share:.0f}%" for g, share in sorted(out.items())))
    assert out["Ethernet"] > 0.5 and out["all"] > 0.5, out


def _tcpdump(path, *flags, count=None):
    more = ["-c", str(count)] if count else []
    run = subprocess.run([ref.tcpdump(), "-n", "-r", str(path), *more, *flags], capture_output=True, text=True)
    return run.stdout.splitlines()


def _ours(path, count=None, **opts):
    out = io.StringIO()
    with pfilter.open(path) as cap:
        p = Printer(**opts)
        for b in cap:
            p.write_batch(b, range(min(len(b), count or len(b))), out)
            break
    return out.getvalue().splitlines()


@pytest.mark.parametrize("name,count", [
    ("tcpdump__ieee802.11_meshid.pcap", None), ("libpcap__wpa2linkuppassphraseiswireshark.pcap", 11),
    ("tcpdump__reason_code-12.pcap", None), ("tcpdump__status_code-1.pcap", None),
    ("libpcap__Network_Join_Nokia_Mobile.pcap", None)])
@pytest.mark.parametrize("flags,opts", [((), {}), (("-e",), {"e": 1}), (("-v",), {"v": 1}), (("-x",), {"x": 1}),
                                        (("-e", "-v"), {"e": 1, "v": 1})],
                         ids=lambda v: " ".join(v) if isinstance(v, tuple) else None)
def test_80211_and_radiotap_print_as_tcpdump(name, count, flags, opts):
    """Radiotap fields, beacons, probes, (de)authentication, association, EAPOL in data frames
    (link type 127), and bare 802.11 frames (105)."""
    path = ref.PCAPS / name
    theirs = _tcpdump(path, *flags, count=count)
    assert theirs
    assert _ours(path, count=count, **opts) == theirs


@pytest.mark.parametrize("flags,opts", [
    ((), {}), (("-e",), {"e": 1}), (("-t",), {"t": 1}), (("-tt",), {"t": 2}), (("-ttt",), {"t": 3}),
    (("-tttt",), {"t": 4}), (("-ttttt",), {"t": 5}), (("-x",), {"x": 1}), (("-xx",), {"x": 2}),
    (("-X",), {"X": 1}), (("-XX",), {"X": 2}), (("-A",), {"A": 1}), (("-S",), {"S": True}),
    (("-#",), {"number": True}), (("-v",), {"v": 1}), (("-q",), {"q": True}),
], ids=lambda v: " ".join(v) if isinstance(v, tuple) else None)
def test_each_flag_prints_what_tcpdump_prints(flags, opts):
    """TCP conversations with HTTP (relative sequence numbers, options, payload summaries)."""
    path = ref.PCAPS / "pcapplusplus__ExamplesTest__pcap_examples__tcp-reassembly.pcap"
    assert _ours(path, count=60, **opts) == _tcpdump(path, *flags, count=60)


def test_the_command_prints_tcpdumps_lines_with_the_flags():
    path = ref.PCAPS / "dpkt__http.pcap"
    ours = subprocess.run([sys.executable, "-m", "pfilter", "--quiet", "-r", str(path), "-e", "-v", "-#", "tcp"],
                          capture_output=True, text=True)
    assert ours.returncode == 0, ours.stderr
    assert ours.stdout.splitlines() == _tcpdump(path, "-e", "-v", "-#", "tcp")


def test_an_unknown_flag_exits_with_tcpdumps_status():
    theirs = subprocess.run([ref.tcpdump(), "--no-such-flag"], capture_output=True)
    ours = subprocess.run([sys.executable, "-m", "pfilter", "--no-such-flag"], capture_output=True, text=True)
    assert ours.returncode == theirs.returncode != 0
    assert ours.stderr.strip().splitlines()[-1].startswith("pfilter: ")


@pytest.mark.parametrize("flags", [[], ["--nano"], ["-ttt", "-S", "-#"], ["-tt", "-XX"], ["-AA"]],
                         ids=lambda f: " ".join(f) or "plain")
def test_a_nanosecond_capture_prints_as_tcpdump_with_the_same_flags(flags):
    """tcpdump prints microseconds from a nanosecond file unless --nano; the command does the same."""
    path = ref.PCAPS / "tcpdump__tcp-handshake-nano.pcap"
    ours = subprocess.run([sys.executable, "-m", "pfilter", "--quiet", "-r", str(path), *flags],
                          capture_output=True, text=True)
    assert ours.returncode == 0, ours.stderr
    assert ours.stdout.splitlines() == _tcpdump(path, *flags)


@pytest.mark.parametrize("args", [["tcp port 80"], ["-c", "7", "udp or icmp"], ["-tt", "udp or arp or icmp6"]],
                         ids=lambda a: " ".join(a))
def test_the_command_prints_the_matches_as_tcpdump(args):
    """The selected packets of each batch (the compiled printer with an index subset)."""
    path = ref.PCAPS / "pcapplusplus__ExamplesTest__pcap_examples__many-protocols.pcap"
    ours = subprocess.run([sys.executable, "-m", "pfilter", "--quiet", "-r", str(path), *args],
                          capture_output=True, text=True)
    assert ours.returncode == 0, ours.stderr
    theirs = _tcpdump(path, *args)
    assert len(theirs) > 5
    assert ours.stdout.splitlines() == theirs


@pytest.mark.parametrize("name", ["dpkt__dns_icmp.pcap", "pcapplusplus__Pcap++Test__PcapExamples__sll.pcap",
                                  "pcapplusplus__ExamplesTest__pcap_examples__tcp-reassembly.pcap"])
@pytest.mark.parametrize("flags", [["-e", "-q"], ["-q", "-v"], ["-e", "-S"]], ids=lambda f: " ".join(f))
def test_flag_combinations_print_as_tcpdump(name, flags):
    path = ref.PCAPS / name
    ours = subprocess.run([sys.executable, "-m", "pfilter", "--quiet", "-c", "100", "-r", str(path), *flags],
                          capture_output=True, text=True)
    assert ours.returncode == 0, ours.stderr
    assert ours.stdout.splitlines() == _tcpdump(path, "-c", "100", *flags)


def _command(name, *args):
    """pfilter's printed lines and tcpdump's for the same capture and arguments."""
    path = ref.corpus_file(f"pcaps/{name}")
    ours = subprocess.run([sys.executable, "-m", "pfilter", "--quiet", "-r", str(path), *args],
                          capture_output=True, text=True)
    assert ours.returncode == 0, ours.stderr
    theirs = _tcpdump(path, *args)
    assert theirs
    return ours.stdout.splitlines(), theirs


@pytest.mark.parametrize("name,args", [
    # ICMP errors with -v: the quoted datagram ends at its own total length (no false truncation,
    # no checksum over a part of the inner ICMP), then RFC 4884 MPLS extensions
    ("pcapplusplus__Packet++Test__PacketExamples__IcmpPackets.pcap", ["-v"]),
    # IPv4 options with their contents (RR, LSRR, timestamps), IGMPv3 query details
    ("pcapplusplus__Packet++Test__PacketExamples__ipv4-options.pcap", ["-v"]),
    # ICMPv6 neighbour and router discovery at -v: the length after the name, flags, option lines
    ("pcapplusplus__Packet++Test__PacketExamples__IcmpV6_NeighAdvSoli.pcap", ["-v"]),
    ("pcapplusplus__Packet++Test__PacketExamples__IcmpV6_NeighAdvSoli.pcap", ["-vv"]),
    ("tcpdump__dcb_ets.pcap", ["-v", "ip6 proto 58"]),
    # TCP RST data at -v: at most 30 bytes ('+' when cut, '!' when not captured), escaped as tcpdump
    ("tcpdump__tcp_rst_data.pcap", ["-v"]), ("tcpdump__tcp_rst_diag_payload.pcap", ["-v"]),
    ("tcpdump__tcp_rst_data-trunc.pcap", ["-v"]), ("tcpdump__tcp_rst_diag_payload-trunc.pcap", ["-v"]),
    # DNS: the extended RCODE of the OPT record, URI records, answers and questions past the capture
    ("tcpdump__dns-badcookie.pcap", []), ("tcpdump__dns-badcookie.pcap", ["-v"]),
    ("tcpdump__dns-badvers.pcap", ["-v"]),
    ("tcpdump__dns-uri.pcap", []), ("tcpdump__dns-uri.pcap", ["-v"]),
    ("tcpdump__dns_udp_2.pcap", []), ("tcpdump__dns_udp_2.pcap", ["-v"]),
    ("tcpdump__dns_fwdptr.pcap", []), ("tcpdump__dns_fwdptr.pcap", ["-v"]),
    # ICMPv6 node information queries, RPL, a zero length
    ("tcpdump__icmpv6-ni-flags.pcap", []), ("tcpdump__icmpv6-ni-flags.pcap", ["-v"]),
    ("tcpdump__rpl-14-dao.pcap", []), ("tcpdump__rpl-14-dao.pcap", ["-v"]), ("tcpdump__rpl-14-dao.pcap", ["-vv"]),
    ("tcpdump__icmpv6-length-zero.pcapng", []), ("tcpdump__icmpv6-length-zero.pcapng", ["-v"]),
], ids=lambda v: " ".join(v) if isinstance(v, list) else v)
def test_protocol_details_print_as_tcpdump(name, args):
    ours, theirs = _command(name, *args)
    assert ours == theirs
