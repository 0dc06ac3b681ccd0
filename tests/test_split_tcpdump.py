"""classify --split (issue 12): every rule's file is byte for byte what `tcpdump -r IN -w FILE
RULE` writes, over corpus captures and 22 rules mixing link-layer and transport tests; the
first-match and unmatched files equal tcpdump's output for the equivalent expressions; the set
of files appears whole or not at all."""
import os
import re
import subprocess
import sys

import numpy as np
import pytest

import pfilter
import reference as ref
from pfilter.capture import split as split_mod

RULES = {
    "ip": "ip",
    "ip6": "ip6",
    "arp": "arp",
    "tcp": "tcp",
    "udp": "udp",
    "icmp": "icmp or icmp6",
    "web": "tcp port 80 or tcp port 443",
    "dns": "udp port 53 or tcp port 53",
    "syn": "tcp[tcpflags] & tcp-syn != 0",
    "fin_rst": "tcp[tcpflags] & (tcp-fin|tcp-rst) != 0",
    "frag": "ip[6:2] & 0x3fff != 0",
    "big": "greater 1000",
    "small": "less 100",
    "bcast": "ether broadcast",
    "mcast": "ether multicast",
    "unicast_src": "ether[6] & 1 = 0",
    "vlan": "vlan",
    "net10": "net 10.0.0.0/8",
    "net192": "net 192.168.0.0/16",
    "hi_ports": "tcp dst portrange 1024-65535",
    "ttl_low": "ip[8] < 64",
    "not_ip": "not ip and not ip6",
}

# EN10MB captures of the corpus: pcap (one big-endian), pcapng, several sizes
CAPTURES = [
    "pcapplusplus__ExamplesTest__pcap_examples__many-protocols.pcap",
    "pcapplusplus__ExamplesTest__pcap_examples__ip-frag.pcap",
    "pcapplusplus__Pcap++Test__PcapExamples__650HttpResponses.pcap",
    "tcpdump__afs.pcap",
    "tcpdump__pptp.pcap",
    "tcpdump__of13_ericsson.pcapng",
]


def _tcpdump_write(src, dst, expr):
    r = subprocess.run([ref.tcpdump(), "-r", str(src), "-w", str(dst), "--", expr],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return dst.read_bytes()


def _rules_file(tmp_path, rules=RULES):
    path = tmp_path / "rules.txt"
    path.write_text("".join(f"{k}: {v}\n" for k, v in rules.items()))
    return path


@pytest.mark.parametrize("name", CAPTURES)
def test_each_split_file_is_what_tcpdump_writes_for_its_rule(tmp_path, name):
    src = ref.corpus_file(f"pcaps/{name}")
    out = tmp_path / "out"
    out.mkdir()
    result = pfilter.classify(src, RULES, split=str(out / "{rule}.pcap"))
    assert sorted(os.listdir(out)) == sorted(f"{r}.pcap" for r in RULES)
    nonempty = 0
    for r, expr in RULES.items():
        want = _tcpdump_write(src, tmp_path / f"ref-{r}.pcap", expr)
        got = (out / f"{r}.pcap").read_bytes()
        assert got == want, f"{name}: rule {r!r} ({expr})"
        nonempty += len(got) > 24
    assert nonempty >= 2     # the comparison covered packets, not only headers
    assert result.files == {r: [str(out / f"{r}.pcap")] for r in RULES}
    counts = dict(zip(result.rules, result.counts.tolist()))
    for r in RULES:
        with pfilter.open(out / f"{r}.pcap") as cap:
            assert sum(len(b) for b in cap) == counts[r]


def test_first_match_and_unmatched_equal_tcpdump_with_the_equivalent_expressions(tmp_path):
    src = ref.corpus_file(f"pcaps/{CAPTURES[0]}")
    order = ["web", "dns", "tcp", "udp", "arp", "ip6"]
    rules = {r: RULES[r] for r in order}
    out = tmp_path / "out"
    out.mkdir()
    pfilter.classify(src, rules, order=order, split=str(out / "{rule}.pcap"), first_match=True,
                     unmatched=str(out / "rest.pcap"))
    before = []
    for r in order:
        expr = f"({rules[r]})" + "".join(f" and not ({rules[b]})" for b in before)
        assert (out / f"{r}.pcap").read_bytes() == _tcpdump_write(src, tmp_path / f"ref-{r}.pcap", expr), r
        before.append(r)
    rest = "not (" + " or ".join(f"({rules[r]})" for r in order) + ")"
    assert (out / "rest.pcap").read_bytes() == _tcpdump_write(src, tmp_path / "ref-rest.pcap", rest)
    # without --first-match a packet goes into every rule: tcp holds the web packets too
    every = tmp_path / "every"
    every.mkdir()
    pfilter.classify(src, rules, split=str(every / "{rule}.pcap"), unmatched=str(every / "rest.pcap"))
    assert (every / "tcp.pcap").read_bytes() == _tcpdump_write(src, tmp_path / "ref-tcp.pcap", "tcp")
    assert (every / "rest.pcap").read_bytes() == (out / "rest.pcap").read_bytes()


def test_the_command_splits_and_classification_write_gives_the_same_files(tmp_path):
    src = ref.corpus_file(f"pcaps/{CAPTURES[2]}")
    rules = _rules_file(tmp_path)
    cli_dir, api_dir = tmp_path / "cli", tmp_path / "api"
    cli_dir.mkdir()
    api_dir.mkdir()
    r = subprocess.run([sys.executable, "-m", "pfilter", "classify", "-r", str(src), "-R", str(rules),
                        "--split", str(cli_dir / "{rule}.pcap"), "--unmatched", str(cli_dir / "none.pcap")],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "web" in r.stdout          # the table is still printed
    result = pfilter.classify(src, rules)
    files = result.write(str(api_dir / "{rule}.pcap"), unmatched=str(api_dir / "none.pcap"))
    assert set(files) == set(RULES) | {None}
    assert sorted(os.listdir(cli_dir)) == sorted(os.listdir(api_dir))
    for f in os.listdir(cli_dir):
        assert (cli_dir / f).read_bytes() == (api_dir / f).read_bytes(), f
    assert (cli_dir / "web.pcap").read_bytes() == _tcpdump_write(src, tmp_path / "w.pcap", RULES["web"])


def test_pcapng_and_compressed_split_files_hold_tcpdumps_packets(tmp_path):
    src = ref.corpus_file(f"pcaps/{CAPTURES[0]}")
    rules = {r: RULES[r] for r in ("tcp", "udp", "ip6")}
    pfilter.classify(src, rules, split=str(tmp_path / "{rule}.pcapng.gz"), packed=True)   # as the command
    seen = 0
    for r, expr in rules.items():
        want = _tcpdump_write(src, tmp_path / f"ref-{r}.pcap", expr)
        seen += len(want) > 24
        assert (tmp_path / f"{r}.pcapng.gz").read_bytes()[:2] == b"\x1f\x8b"
        with pfilter.open(tmp_path / f"{r}.pcapng.gz") as got, pfilter.open(tmp_path / f"ref-{r}.pcap") as exp:
            assert got.format == "pcapng"
            a, b = list(got), list(exp)
            pa = [x.packet(i) for x in a for i in range(len(x))]
            pb = [x.packet(i) for x in b for i in range(len(x))]
            assert pa == pb
            assert np.array_equal(np.concatenate([x.timestamps for x in a] or [np.zeros(0, np.int64)]),
                                  np.concatenate([x.timestamps for x in b] or [np.zeros(0, np.int64)]))
    assert seen == len(rules)        # every rule had packets to compare


@pytest.mark.parametrize("path", ["fast", "general"])
def test_a_failure_during_the_pass_leaves_none_of_the_files(tmp_path, monkeypatch, path):
    """A write failing after others succeeded, on either path (the fast path's writer threads,
    or Output.write): OSError, and none of the files appears."""
    src = ref.corpus_file(f"pcaps/{CAPTURES[0]}")
    out = tmp_path / "out"
    out.mkdir()
    (out / "tcp.pcap").write_bytes(b"old")        # an existing file stays as it was
    calls = []
    if path == "general":
        monkeypatch.setenv("PFILTER_NO_FASTPATH", "1")
        real = split_mod.Output.write

        def failing(self, batch, idx=None, raw=None):
            calls.append(self.path)
            if len(calls) == 3:
                raise OSError(28, "No space left on device", self.path)
            return real(self, batch, idx, raw)
        monkeypatch.setattr(split_mod.Output, "write", failing)
    else:
        from pfilter import _impl
        _splitwrite = _impl.native("pfilter.capture._splitwrite")
        if _splitwrite is None:
            pytest.skip("the split fast path is not in use (PFILTER_PUREPYTHON, or not built)")
        real_selected = _splitwrite.write_selected

        def failing(*args):
            calls.append(args)
            if len(calls) == 2:              # the second writer's share of the first batch
                return 28, 0
            return real_selected(*args)
        monkeypatch.setattr(_splitwrite, "write_selected", failing)
    with pytest.raises(OSError) as err:
        pfilter.classify(src, {r: RULES[r] for r in ("ip", "tcp", "udp")}, split=str(out / "{rule}.pcap"))
    assert err.value.errno == 28
    assert len(calls) == (3 if path == "general" else 2)
    assert sorted(os.listdir(out)) == ["tcp.pcap"]
    assert (out / "tcp.pcap").read_bytes() == b"old"


def test_a_full_file_system_on_the_fast_path_gives_one_line_and_no_file(tmp_path):
    """A real failure inside the fast path's writer threads (the file-size limit: EFBIG): the
    command says so in one line, exits 1 and leaves none of the files."""
    import resource
    src = ref.corpus_file(f"pcaps/{CAPTURES[2]}")
    rules = _rules_file(tmp_path, {r: RULES[r] for r in ("ip", "tcp", "small")})
    out = tmp_path / "out"
    out.mkdir()
    (out / "tcp.pcap").write_bytes(b"old")
    limit = os.path.getsize(src) // 3
    run = subprocess.run([sys.executable, "-m", "pfilter", "classify", "-r", str(src), "-R", str(rules),
                          "--split", str(out / "{rule}.pcap")], capture_output=True, text=True, timeout=120,
                         preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit)))
    assert run.returncode == 1, run.stderr
    assert run.stderr.count("\n") == 1 and "File too large" in run.stderr, run.stderr
    assert sorted(os.listdir(out)) == ["tcp.pcap"] and (out / "tcp.pcap").read_bytes() == b"old"


@pytest.mark.parametrize("name", CAPTURES[:3] + ["nanoseconds"])
def test_the_fast_and_general_paths_write_the_same_files(tmp_path, monkeypatch, name):
    """The fast path (plain pcap outputs written from the read buffer by threads) against the
    writers (PFILTER_NO_FASTPATH), with first-match, an unmatched pcapng file (general path)
    next to pcap ones (fast path) and all 22 rules; also a nanosecond pcap."""
    if name == "nanoseconds":
        src = tmp_path / "ns.pcap"
        with pfilter.open(ref.corpus_file(f"pcaps/{CAPTURES[0]}")) as cap:
            pfilter.write(src, cap, ts_resolution="ns")
    else:
        src = ref.corpus_file(f"pcaps/{name}")
    order = list(RULES)[::-1]
    runs = {}
    for path in ("fast", "general"):
        monkeypatch.setenv("PFILTER_NO_FASTPATH", "1" if path == "general" else "0")
        for first, unmatched, packed in ((False, True, False), (True, True, True), (False, False, True)):
            out = tmp_path / f"{path}-{first}-{unmatched}-{packed}"
            out.mkdir()
            pfilter.classify(src, RULES, order=order, split=str(out / "{rule}.pcap"), first_match=first,
                             unmatched=str(out / "rest.pcapng") if unmatched else None, packed=packed)
            runs[path, first, unmatched, packed] = {f: (out / f).read_bytes() for f in os.listdir(out)}
    for key in [k[1:] for k in runs if k[0] == "fast"]:
        assert runs[("fast",) + key] == runs[("general",) + key], key
        assert len(runs[("fast",) + key]) == len(RULES) + key[1]


def test_inputs_on_and_off_the_fast_path_keep_each_file_in_order(tmp_path, monkeypatch):
    """Several inputs, one of them big-endian (its records are not copied as they are): the
    files written by the fast path's threads, then by the writers, then by the threads again,
    hold the packets in input order, as the writers alone write them."""
    import struct
    little = ref.corpus_file(f"pcaps/{CAPTURES[0]}").read_bytes()
    records, pos = [], 24
    while pos + 16 <= len(little):       # the same records with big-endian headers, 4 times over
        sec, frac, cap_len, wire = struct.unpack_from("<IIII", little, pos)
        records.append(struct.pack(">IIII", sec, frac, cap_len, wire) + little[pos + 16:pos + 16 + cap_len])
        pos += 16 + cap_len
    magic, major, minor, zone, sigfigs, snap, link = struct.unpack_from("<IHHiIII", little)
    big_endian = tmp_path / "big-endian.pcap"
    big_endian.write_bytes(struct.pack(">IHHiIII", magic, major, minor, zone, sigfigs, snap, link)
                           + b"".join(records) * 4)
    with pfilter.open(big_endian) as cap:
        assert cap.pcap_layout == (16, True)
    sources = [ref.corpus_file(f"pcaps/{CAPTURES[0]}"), big_endian, ref.corpus_file(f"pcaps/{CAPTURES[2]}")]
    from pfilter import _impl
    native = _impl.native("pfilter.capture._splitwrite")
    if native is not None:           # slow writer threads: their writes are in flight at the switch
        import time
        real = native.write_selected
        monkeypatch.setattr(native, "write_selected", lambda *a: (time.sleep(0.2), real(*a))[1])
    runs = {}
    for path in ("fast", "general"):
        monkeypatch.setenv("PFILTER_NO_FASTPATH", "1" if path == "general" else "0")
        out = tmp_path / path
        out.mkdir()
        pfilter.classify(sources, RULES, split=str(out / "{rule}.pcap"), packed=True)
        runs[path] = {f: (out / f).read_bytes() for f in os.listdir(out)}
    assert runs["fast"] == runs["general"]
    assert sum(len(v) > 24 for v in runs["fast"].values()) >= 10


def test_an_interruption_in_the_api_waits_for_the_writes_in_flight(tmp_path, monkeypatch):
    """KeyboardInterrupt in classify while the fast path's (slowed) writer threads still write
    a batch: classify waits for them, then names every file, each the first whole records of
    what the uninterrupted pass writes."""
    src = tmp_path / "three-times.pcap"
    with pfilter.open(ref.corpus_file(f"pcaps/{CAPTURES[0]}")) as cap:
        batches = list(cap)
        pfilter.write(src, batches * 3, snaplen=cap.snaplen)
    rules = {r: RULES[r] for r in ("ip", "tcp", "udp", "small", "not_ip")}
    whole = tmp_path / "whole"
    whole.mkdir()
    matrix = pfilter.classify(src, rules, split=str(whole / "{rule}.pcap")).matrix
    from pfilter import _impl
    native = _impl.native("pfilter.capture._splitwrite")
    if native is not None:
        import time
        real = native.write_selected
        monkeypatch.setattr(native, "write_selected", lambda *a: (time.sleep(0.3), real(*a))[1])
    seen = []

    def progress(done, total, packets):
        seen.append(packets)
        if len(seen) == 2:
            raise KeyboardInterrupt
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(KeyboardInterrupt):
        pfilter.classify(src, rules, split=str(out / "{rule}.pcap"), progress=progress)
    assert sorted(os.listdir(out)) == sorted(f"{r}.pcap" for r in rules)
    assert 0 < seen[-1] < len(matrix)
    for k, r in enumerate(rules):
        got, want = (out / f"{r}.pcap").read_bytes(), (whole / f"{r}.pcap").read_bytes()
        assert want.startswith(got), r
        with pfilter.open(out / f"{r}.pcap") as cap:
            n = sum(len(b) for b in cap)
        # every packet of the batches written before the interruption, and no other
        assert n == int(matrix[:seen[-1], k].sum()), r


def test_records_cut_to_the_snapshot_length_are_written_as_tcpdump_writes_them(tmp_path):
    """Records longer than the file's snapshot length are cut by the reader, so their headers
    in the file no longer say what is written: the fast path stops at the first one and the
    writers take over from there, as tcpdump writes them."""
    import random
    import struct
    rng = random.Random(3)
    records = []
    for i in range(3000):
        n = rng.choice([10, 50, 150, 300]) if i >= 1000 else 10
        ip = struct.pack(">BBHHHBBH4s4s", 0x45, 0, 28 + n, i, 0, 64, 17, 0, bytes([10, 0, 0, 1]),
                         bytes([10, 0, 0, 2]))
        frame = b"\xff" * 6 + b"\x00\x11\x22\x33\x44\x55\x08\x00" + ip + struct.pack(">HHHH", 1000 + i % 7, 53,
                                                                                      8 + n, 0) + bytes(n)
        records.append(struct.pack("<IIII", 1000 + i, i, len(frame), len(frame)) + frame)
    src = tmp_path / "snap200.pcap"
    src.write_bytes(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 200, 1) + b"".join(records))
    rules = {"a": "udp src port 1000 or udp src port 1003", "b": "greater 100", "c": "udp", "d": "less 60"}
    for packed in (False, True):
        out = tmp_path / f"out-{packed}"
        out.mkdir()
        pfilter.classify(src, rules, split=str(out / "{rule}.pcap"), packed=packed)
        for r, expr in rules.items():
            assert (out / f"{r}.pcap").read_bytes() == _tcpdump_write(src, tmp_path / f"ref-{r}.pcap", expr), r


def test_an_output_that_cannot_be_created_creates_none(tmp_path):
    src = ref.corpus_file(f"pcaps/{CAPTURES[0]}")
    out = tmp_path / "out"
    out.mkdir()
    (out / "udp.pcap").mkdir()          # a directory where the udp file would go
    with pytest.raises(IsADirectoryError):
        pfilter.classify(src, {r: RULES[r] for r in ("ip", "tcp", "udp")}, split=str(out / "{rule}.pcap"))
    assert sorted(os.listdir(out)) == ["udp.pcap"]


def test_a_damaged_input_keeps_the_packets_before_the_damage_in_every_file(tmp_path):
    src = ref.corpus_file(f"pcaps/{CAPTURES[2]}")
    data = src.read_bytes()
    cut = tmp_path / "cut.pcap"
    cut.write_bytes(data[: len(data) * 2 // 3])       # ends inside a record
    out = tmp_path / "out"
    out.mkdir()
    rules = {r: RULES[r] for r in ("tcp", "web", "small")}
    with pytest.raises(pfilter.CaptureFormatError):
        pfilter.classify(cut, rules, split=str(out / "{rule}.pcap"))
    for r, expr in rules.items():
        # tcpdump writes the same packets, then reports the truncation
        subprocess.run([ref.tcpdump(), "-r", str(cut), "-w", str(tmp_path / f"ref-{r}.pcap"), expr],
                       capture_output=True)
        assert (out / f"{r}.pcap").read_bytes() == (tmp_path / f"ref-{r}.pcap").read_bytes(), r


@pytest.mark.parametrize("template, message", [
    ("out.pcap", "must contain {rule}"),
    ("{rule}-{when}.pcap", "unknown field"),
])
def test_bad_templates_are_filter_errors(tmp_path, template, message):
    with pytest.raises(pfilter.FilterError, match=message):
        pfilter.classify(pfilter.PacketBatch.from_packets([b"\0" * 60]), {"a": "ip"},
                         split=str(tmp_path / template))
    assert os.listdir(tmp_path) == []


def test_the_command_refuses_output_options_without_split_files(tmp_path):
    rules = _rules_file(tmp_path, {"a": "ip"})
    r = subprocess.run([sys.executable, "-m", "pfilter", "classify", "-r", "x.pcap", "-R", str(rules),
                        "--first-match"], capture_output=True, text=True)
    assert r.returncode == 2
    assert len(r.stderr.strip().splitlines()) == 1 and "--split" in r.stderr


def test_an_interruption_keeps_whole_records_in_every_split_file(tmp_path):
    """SIGINT while classify --split reads a pipe: exit 130, one line, and every file is a
    valid capture holding the first packets tcpdump writes for its rule."""
    import signal
    import time
    corpus = ref.corpus_file(f"pcaps/{CAPTURES[0]}")
    src = tmp_path / "three-times.pcap"           # 8.8 MB: more than the 4 MiB a pipe window holds
    with pfilter.open(corpus) as cap:
        batches = list(cap)
        pfilter.write(src, batches * 3, snaplen=cap.snaplen)
    data = src.read_bytes()
    rules = {r: RULES[r] for r in ("tcp", "udp", "small")}
    rules_file = _rules_file(tmp_path, rules)
    out = tmp_path / "out"
    out.mkdir()
    proc = subprocess.Popen([sys.executable, "-m", "pfilter", "classify", "-r", "-", "-R", str(rules_file),
                             "--split", str(out / "{rule}.pcap")],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        proc.stdin.write(data[: len(data) * 2 // 3])      # a window and a half, then nothing
        proc.stdin.flush()
        time.sleep(3)
        proc.send_signal(signal.SIGINT)
        _out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 130, err
    # the line says the files are what came before it, and how much was read
    assert len(err.decode().strip().splitlines()) == 1, err
    assert re.fullmatch(r"pfilter: interrupted by SIGINT: the split files hold the packets before it \(\d+ packets read\)",
                        err.decode().strip()), err
    assert sorted(os.listdir(out)) == sorted(f"{r}.pcap" for r in rules)
    for r, expr in rules.items():
        got = (out / f"{r}.pcap").read_bytes()
        want = _tcpdump_write(src, tmp_path / f"ref-{r}.pcap", expr)
        assert got[:24] == want[:24] and len(got) > 24, r
        assert want[24:].startswith(got[24:]), r          # the first packets, whole
        # a valid capture: tcpdump reads it to the end without an error
        check = subprocess.run([ref.tcpdump(), "-r", str(out / f"{r}.pcap"), "-w", "/dev/null"],
                               capture_output=True, text=True)
        assert check.returncode == 0, check.stderr
