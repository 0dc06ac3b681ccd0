"""Many inputs and time windows (issue 20): -r DIR (recursive, hidden entries and non-captures
skipped), repeated -r, -V FILE, globs, files counted in parallel; --merge against mergecap of
tcpdump's outputs; --after/--before against editcap -A/-B then tcpdump."""
import os
import struct
import subprocess
import sys

import pytest

import pfilter
import reference as ref

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "scripts"))
import gen_capture  # noqa: E402

# tcpdump's -r, in one place
EXPRS = ["tcp", "udp port 53 or icmp"]


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """Four captures in a tree: nested directory, a hidden file and directory (skipped), a text
    file (skipped with a warning), a nanosecond and a pcapng capture."""
    d = tmp_path_factory.mktemp("tree")
    (d / "sub" / "deeper").mkdir(parents=True)
    (d / ".hidden").mkdir()
    paths = [d / "a.pcap", d / "sub" / "b.pcap", d / "sub" / "deeper" / "c.pcap", d / "sub" / "d.pcap"]
    for i, p in enumerate(paths):
        gen_capture.generate(p, 1500 + 300 * i, seed=10 + i)
    gen_capture.generate(d / ".hidden" / "x.pcap", 100, seed=1)
    gen_capture.generate(d / ".y.pcap", 100, seed=2)
    (d / "notes.txt").write_text("not a capture\n")
    return d, [str(p) for p in paths]


def run(*args, check=True):
    r = subprocess.run([sys.executable, "-m", "pfilter", *map(str, args)], capture_output=True, text=True)
    if check:
        assert r.returncode == 0, r.stderr
    return r


def tcpdump(*args):
    return subprocess.run([ref.tcpdump(), *map(str, args)], check=True, capture_output=True)


def count_tcpdump(path, expr):
    return len(tcpdump("-n", "-r", path, expr).stdout.splitlines())


def records(path):
    """(timestamp ns, caplen, wirelen, bytes) of every packet, in order."""
    out = []
    with pfilter.open(str(path)) as cap:
        for b in cap:
            for i in range(len(b)):
                o, c = int(b.offsets[i]), int(b.caplen[i])
                out.append((int(b.timestamps[i]), c, int(b.wirelen[i]), b.data[o:o + c].tobytes()))
    return out


@pytest.mark.parametrize("expr", EXPRS)
def test_directory_recursive_counts_equal_a_tcpdump_loop(inputs, expr):
    d, paths = inputs
    want = sum(count_tcpdump(p, expr) for p in paths)
    for j in ("1", "2", "4"):
        r = run("-r", d, "--count", "-j", j, expr)
        assert r.stdout == f"{want} packets\n"
        assert f"from {len(paths)} files" in r.stderr          # hidden entries skipped
    assert f"pfilter: warning: {d / 'notes.txt'}: not a capture file, skipped" in r.stderr.splitlines()
    assert ".hidden" not in r.stderr and ".y.pcap" not in r.stderr


def test_a_directory_and_a_wildcard_read_each_capture_once_in_find_sort_order(inputs, tmp_path):
    """-r DIR in the order `find DIR -type f | LC_ALL=C sort` lists (a-b.pcap, a.pcap, a/x.pcap:
    '-' < '.' < '/'), equal to tcpdump -V of that list; a quoted wildcard with ** reads each
    capture once (not once more for every directory above it that ** also matches) and does
    not follow a link back up the tree."""
    import shutil
    _d, paths = inputs
    d = tmp_path / "ord"
    (d / "a").mkdir(parents=True)
    for name, src in (("a/x.pcap", 0), ("a.pcap", 1), ("a-b.pcap", 2), ("B.pcap", 3)):
        shutil.copy(paths[src], d / name)
    listed = subprocess.run(f"find {d} -type f | LC_ALL=C sort", shell=True, capture_output=True, text=True,
                            check=True).stdout
    listing = tmp_path / "list.txt"
    listing.write_text(listed)
    ours, theirs = tmp_path / "ours.pcap", tmp_path / "theirs.pcap"
    run("--quiet", "-r", d, "-w", ours, "tcp")
    tcpdump("-Z", "root", "-V", listing, "-w", theirs, "tcp")      # (as root: no privileges dropped
    assert ours.read_bytes() == theirs.read_bytes()                 # before the second file's open)
    everything = run("-r", d, "--count", "").stdout
    os.symlink("..", d / "a" / "up")               # a loop: ord/a/up/a/up/...
    for pattern in (f"{d}/**", f"{d}/**/*.pcap", f"{d}/*"):
        r = run("-r", pattern, "--count", "")
        assert r.stdout == everything and "from 4 files" in r.stderr, pattern
    assert run("-r", f"{d}/**", "-w", tmp_path / "glob.pcap", "tcp").returncode == 0
    assert (tmp_path / "glob.pcap").read_bytes() == theirs.read_bytes()


def test_inputs_of_two_link_types_into_one_pcap_file_are_refused_before_any_packet(inputs, tmp_path):
    """A later input of another link type is said before the first input is filtered (its
    header is read with the others' before writing), not after every input before it."""
    _d, paths = inputs
    sll = tmp_path / "sll.pcap"
    pfilter.write(str(sll), pfilter.PacketBatch.from_packets([bytes(40)] * 5, linktype=113))
    seen = []
    out = tmp_path / "mixed.pcap"
    with pytest.raises(pfilter.FilterError, match=f"{sll}: link type 113 cannot go into .*mixed.pcap, a pcap "
                                                  f"file of link type 1: write pcapng instead"):
        pfilter.filter_file(paths[:3] + [str(sll)], str(out), "", on_batch=lambda b, i: seen.append(len(b)))
    assert seen == [] and not out.exists()
    r = run("-r", paths[0], "-r", sll, "-w", out, "tcp", check=False)
    assert r.returncode == 1 and "packets written" not in r.stderr and not out.exists()
    assert run("-r", paths[0], "-r", sll, "-w", tmp_path / "mixed.pcapng", "tcp").returncode == 0


def test_a_missing_input_is_said_before_any_input_is_read(inputs, tmp_path):
    """A name of a list (or a later -r) that does not exist: one line before anything is read
    or announced, no output made (not after the inputs before it, whose work was then lost)."""
    _d, paths = inputs
    listing = tmp_path / "list.txt"
    listing.write_text(f"{paths[0]}\n{tmp_path / 'nope.pcap'}\n{paths[1]}\n")
    out = tmp_path / "out.pcap"
    for how in (["-V", listing], ["-r", paths[0], "-r", tmp_path / "nope.pcap"]):
        for what in (["-w", out], ["--count"]):
            r = run(*how, *what, "tcp", check=False)
            assert r.returncode == 1 and r.stdout == "" and not out.exists()
            assert r.stderr == f"pfilter: {tmp_path / 'nope.pcap'}: No such file or directory\n"


def test_a_list_names_files_by_their_bytes(inputs, tmp_path):
    """tcpdump -V takes a list's names as bytes: a name that is not UTF-8 (a Latin-1 file
    system's) is a file like any other, not a list refused as text."""
    import shutil
    _d, paths = inputs
    name = os.fsencode(tmp_path) + b"/caf\xe9.pcap"
    shutil.copy(paths[0], name)
    listing = tmp_path / "list.txt"
    listing.write_bytes(name + b"\n" + os.fsencode(paths[1]) + b"\n")
    want = sum(count_tcpdump(p, "tcp") for p in paths[:2])
    assert run("-V", listing, "--count", "tcp").stdout == f"{want} packets\n"


def test_directory_output_is_the_inputs_in_order(inputs, tmp_path):
    d, paths = inputs
    out = tmp_path / "all.pcap"
    run("--quiet", "-r", d, "-w", out, "tcp")
    # sorted by path, as `find DIR | sort`: a.pcap, sub/b.pcap, sub/d.pcap ('.' < 'e'), sub/deeper/c.pcap
    order = [paths[0], paths[1], paths[3], paths[2]]
    want = []
    for k, p in enumerate(order):
        tcpdump("-r", p, "-w", tmp_path / f"t{k}.pcap", "tcp")
        want += records(tmp_path / f"t{k}.pcap")
    assert records(out) == want
    # the same through repeated -r, -V and a glob, with one and several workers
    listing = tmp_path / "list.txt"
    listing.write_text("\n".join(order) + "\n")
    for how in (["-r", order[0], "-r", order[1], "-r", order[2], "-r", order[3]], ["-V", listing]):
        for j in ("1", "3"):
            o = tmp_path / f"o{j}.pcap"
            run("--quiet", *how, "-j", j, "-w", o, "tcp")
            assert o.read_bytes() == out.read_bytes()
    # Divergence: a list written on Windows, with blank lines and indented names, is read as the
    # plain one (tcpdump -V would look for 'a.pcap\r' and for an empty name)
    messy = tmp_path / "messy.txt"
    messy.write_bytes(("\r\n\r\n".join(f"  {p}\t" for p in order) + "\r\n\r\n").encode())
    o = tmp_path / "messy.pcap"
    run("--quiet", "-V", messy, "-w", o, "tcp")
    assert o.read_bytes() == out.read_bytes()
    g = tmp_path / "g.pcap"
    run("--quiet", "-r", os.path.join(d, "sub", "*.pcap"), "-w", g, "tcp")
    assert records(g) == records(tmp_path / "t1.pcap") + records(tmp_path / "t2.pcap")
    r = run("-r", os.path.join(d, "nothing*.pcap"), "tcp", check=False)
    assert r.returncode == 1 and r.stderr.strip().endswith("no file matches")


def test_a_wildcard_takes_what_a_directory_takes_and_a_list_is_taken_as_written(tmp_path):
    """A quoted wildcard (-r 'mix/*') skips a symbolic link to nothing and a file that is no
    capture with a warning, as a directory scan does, and reads the rest; '**' matches at any
    depth; a -V list's names are opened as written, as tcpdump opens them ('*' is no wildcard)."""
    mix = tmp_path / "mix"
    (mix / "sub").mkdir(parents=True)
    gen_capture.generate(mix / "a.pcap", 200, seed=71)
    gen_capture.generate(mix / "sub" / "b.pcap", 200, seed=72)
    os.symlink("nowhere.pcap", mix / "dangling.pcap")
    (mix / "notes.txt").write_text("no capture\n")
    want = count_tcpdump(mix / "a.pcap", "tcp")
    r = run("-r", mix / "*", "--count", "tcp")
    assert r.stdout == f"{want + count_tcpdump(mix / 'sub' / 'b.pcap', 'tcp')} packets\n"
    for name, why in (("dangling.pcap", "a symbolic link to nothing"), ("notes.txt", "not a capture file")):
        assert f"pfilter: warning: {mix / name}: {why}, skipped" in r.stderr.splitlines()
    r = run("-r", mix / "**" / "b.pcap", "--count", "tcp")
    assert r.stdout == f"{count_tcpdump(mix / 'sub' / 'b.pcap', 'tcp')} packets\n"
    r = run("-r", mix / "*.txt", "--count", "tcp", check=False)
    assert r.returncode == 1 and r.stderr.splitlines()[-1] == f"pfilter: {mix / '*.txt'}: no capture file matches"
    listing = tmp_path / "list.txt"
    listing.write_text(f"{mix / '*.pcap'}\n")
    theirs = subprocess.run([ref.tcpdump(), "-V", str(listing), "-w", os.devnull, "tcp"], capture_output=True, text=True)
    r = run("-V", listing, "--count", "tcp", check=False)
    said = theirs.stderr.strip().splitlines()[-1].removeprefix("tcpdump: ")
    assert theirs.returncode == r.returncode == 1 and r.stderr.splitlines()[-1] == f"pfilter: {said}"


def _without_file_access_override():
    """A prefix that runs a command without root's power to read any file (so that permissions
    hold for it), or [] when this is not root."""
    if os.geteuid() != 0:
        return []
    return ["setpriv", "--bounding-set", "-dac_override,-dac_read_search"]


def test_directory_scan_takes_compressed_captures_and_says_what_it_cannot_read(tmp_path):
    import bz2
    import gzip
    import lzma
    d = tmp_path / "d"
    (d / "a").mkdir(parents=True)
    gen_capture.generate(d / "b.pcap", 400, seed=31)
    gen_capture.generate(d / "a" / "x.pcap", 300, seed=32)
    raw = (d / "b.pcap").read_bytes()
    (d / "c.pcap.gz").write_bytes(gzip.compress(raw))
    (d / "e.pcap.xz").write_bytes(lzma.compress(raw))
    (d / "f.pcap.bz2").write_bytes(bz2.compress(raw))
    # compressed files that hold no capture, a text starting with bzip2's magic, links to nothing
    (d / "syslog.1.gz").write_bytes(gzip.compress(b"Dec  6 kernel: hello\n" * 50))
    (d / "old.xz").write_bytes(lzma.compress(b"log line\n" * 50))
    (d / "notes.txt").write_bytes(b"BZh text, not a capture\n")
    os.symlink("nowhere.pcap", d / "gone.pcap")
    os.symlink("loop", d / "loop")
    import socket
    with socket.socket(socket.AF_UNIX) as sock:       # (opening one fails: ENXIO)
        sock.bind(str(d / "sock.pcap"))
        r = run("-r", d, "--count", "")
    # path order (a/x.pcap before b.pcap), compressed captures read, the rest named and skipped
    opened = [line.split(",")[0].split()[-1] for line in r.stderr.splitlines() if line.startswith("reading from")]
    assert opened == [str(d / n) for n in ("a/x.pcap", "b.pcap", "c.pcap.gz", "e.pcap.xz", "f.pcap.bz2")]
    assert r.stdout == f"{300 + 4 * 400} packets\n"
    for name, why in [("syslog.1.gz", "not a capture file"), ("old.xz", "not a capture file"),
                      ("notes.txt", "not a capture file"), ("gone.pcap", "a symbolic link to nothing"),
                      ("loop", "a loop of symbolic links"), ("sock.pcap", "not a regular file")]:
        assert f"pfilter: warning: {d / name}: {why}, skipped" in r.stderr.splitlines()
    warned = [line.split(": ")[2] for line in r.stderr.splitlines() if line.startswith("pfilter: warning: ")]
    assert warned == sorted(warned, key=os.fsencode)     # in path order
    # a file or a directory that cannot be read is an error, not a capture left out unsaid
    prefix = _without_file_access_override()
    if prefix and subprocess.run(prefix + ["true"]).returncode != 0:
        pytest.skip("setpriv cannot drop root's file access override here")
    for locked in (d / "b.pcap", d / "a"):
        locked.chmod(0)
        try:
            out = tmp_path / "out.pcap"
            r = subprocess.run(prefix + [sys.executable, "-m", "pfilter", "-r", str(d), "-w", str(out), "tcp"],
                               capture_output=True, text=True)
        finally:
            locked.chmod(0o755)
        assert r.returncode == 1 and r.stderr.splitlines()[-1] == f"pfilter: {locked}: Permission denied"
        assert "Traceback" not in r.stderr and not out.exists()
    listing = tmp_path / "list.txt"
    listing.write_text(f"{d / 'b.pcap'}\n")
    r = run("-V", listing, "-w", listing, "tcp", check=False)
    assert r.returncode == 1 and "refusing to overwrite the file list" in r.stderr
    assert listing.read_text() == f"{d / 'b.pcap'}\n"
    listing = tmp_path / "empty.txt"
    listing.write_text("\n\n")
    r = run("-V", listing, "--count", "tcp", check=False)
    assert r.returncode == 1 and r.stderr.strip() == f"pfilter: {listing}: no file names in this list"


def test_an_interrupted_merge_reports_every_packet_it_wrote(tmp_path, monkeypatch):
    # Ctrl-C arriving while a run of packets is written: the run is written whole and counted
    import signal
    from pfilter.capture import writer
    paths = [tmp_path / "a.pcap", tmp_path / "b.pcap"]
    for k, p in enumerate(paths):
        gen_capture.generate(p, 3000, seed=41 + k)
    write, calls = writer.PcapWriter.write.__wrapped__, []

    @writer._uninterrupted
    def write_then_interrupt(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 5:
            os.kill(os.getpid(), signal.SIGINT)         # inside the write: held back until it ends
        return write(self, *args, **kwargs)

    monkeypatch.setattr(writer.PcapWriter, "write", write_then_interrupt)
    out = tmp_path / "m.pcap"
    with pytest.raises(KeyboardInterrupt) as info:
        pfilter.filter_file([str(p) for p in paths], str(out), "", merge=True)
    assert len(calls) == 5
    assert info.value.stats.written == len(records(out)) > 0


def _nano_lines(path):
    """tcpdump --nano -tt -n's lines of a capture: every timestamp to the nanosecond."""
    return tcpdump("--nano", "-tt", "-n", "-r", path).stdout.decode().splitlines()


@pytest.mark.parametrize("pcapng", [False, True], ids=["pcap-inputs", "pcapng-inputs"])
def test_pcapng_output_keeps_each_inputs_resolution(tmp_path, pcapng):
    # a microsecond input first, a nanosecond one after: a pcapng output holds both as they
    # are (an interface each, as mergecap writes them); --micro asks for microseconds
    ext = "pcapng" if pcapng else "pcap"
    us, ns = tmp_path / f"us.{ext}", tmp_path / f"ns.{ext}"
    gen_capture.generate(us, 300, seed=51, pcapng=pcapng)
    gen_capture.generate(ns, 300, seed=52, pcapng=pcapng, nanosecond=True)
    assert any(not line.split()[0].endswith("000") for line in _nano_lines(ns))
    out = tmp_path / "out.pcapng"
    run("--quiet", "-r", us, "-r", ns, "-w", out, "")
    assert _nano_lines(out) == _nano_lines(us) + _nano_lines(ns)
    merged, theirs = tmp_path / "merged.pcapng", tmp_path / "mergecap.pcapng"
    run("--quiet", "-r", us, "-r", ns, "--merge", "-w", merged, "")
    subprocess.run([ref.mergecap(), "-w", str(theirs), str(us), str(ns)], check=True)
    assert _nano_lines(merged) == _nano_lines(theirs)
    micro = tmp_path / "micro.pcapng"
    run("--quiet", "--micro", "-r", us, "-r", ns, "-w", micro, "")
    assert all(line.split()[0].endswith("000") for line in _nano_lines(micro))
    assert len(_nano_lines(micro)) == 600


def test_a_damaged_input_of_a_list_is_reported_and_the_next_one_read(tmp_path):
    # as tcpdump -V reads on after a damaged file: its packets before the damage, then the
    # next files; pfilter says so on a line of its own and exits 1
    a, d = tmp_path / "a.pcap", tmp_path / "d.pcap"
    gen_capture.generate(a, 300, seed=61)
    gen_capture.generate(d, 300, seed=62)
    cut = tmp_path / "cut.pcap"
    cut.write_bytes(a.read_bytes()[:10000])
    short = tmp_path / "short.pcap"
    short.write_bytes(a.read_bytes()[:12])
    listing = tmp_path / "list.txt"
    listing.write_text(f"{a}\n{cut}\n{short}\n{d}\n")
    theirs = tmp_path / "tcpdump.pcap"
    # (tcpdump stops at a file it cannot open: its list has no short.pcap)
    (tmp_path / "list3.txt").write_text(f"{a}\n{cut}\n{d}\n")
    # (as root, -Z root: tcpdump gives up root after opening its first file, and the test's
    # directory is root's alone)
    keep = ["-Z", "root"] if os.geteuid() == 0 else []
    subprocess.run([ref.tcpdump(), *keep, "-V", str(tmp_path / "list3.txt"), "-w", str(theirs), "tcp"],
                   capture_output=True)
    want = count_tcpdump(theirs, "")
    assert want > count_tcpdump(a, "tcp")
    for j in ("1", "2"):
        out = tmp_path / f"o{j}.pcap"
        r = run("-V", listing, "-j", j, "-w", out, "tcp", check=False)
        assert r.returncode == 1 and "Traceback" not in r.stderr
        assert out.read_bytes() == theirs.read_bytes()
        errors = [line for line in r.stderr.splitlines() if line.startswith("pfilter: ")]
        assert len(errors) == 2 and errors[0].startswith(f"pfilter: {cut}: offset ")
        assert errors[1].startswith(f"pfilter: {short}: offset 0: ")
        r = run("-V", listing, "-j", j, "--count", "tcp", check=False)
        assert r.returncode == 1 and r.stdout == f"{want} packets\n"
    # the API: on_damage takes each error; without it the first one ends the run
    seen = []
    stats = pfilter.filter_file([str(a), str(cut), str(short), str(d)], str(tmp_path / "api.pcap"), "tcp",
                                on_damage=seen.append)
    assert [type(e) for e in seen] == [pfilter.CaptureFormatError] * 2 and stats.written == want
    assert (tmp_path / "api.pcap").read_bytes() == theirs.read_bytes()
    with pytest.raises(pfilter.CaptureFormatError):
        pfilter.filter_file([str(a), str(cut), str(d)], str(tmp_path / "api2.pcap"), "tcp")
    # ... and what it wrote before stays, also when the input that ends it is no capture at all
    # (its header is damaged: the run ends as it opens it)
    with pytest.raises(pfilter.CaptureFormatError) as caught:
        pfilter.filter_file([str(a), str(short), str(d)], str(tmp_path / "api3.pcap"), "tcp")
    tcpdump_a = tmp_path / "a_tcp.pcap"
    subprocess.run([ref.tcpdump(), "-r", str(a), "-w", str(tcpdump_a), "tcp"], check=True, capture_output=True)
    assert (tmp_path / "api3.pcap").read_bytes() == tcpdump_a.read_bytes()
    assert caught.value.path == str(short) and caught.value.stats.written == count_tcpdump(a, "tcp")
    # --merge stops at the damage, as mergecap does
    r = run("-V", listing, "--merge", "-w", tmp_path / "m.pcap", "tcp", check=False)
    assert r.returncode == 1 and len([x for x in r.stderr.splitlines() if x.startswith("pfilter: ")]) == 1


def test_inputs_whose_header_is_damaged_first_in_a_list_are_reported_and_the_rest_read(tmp_path):
    """Damaged headers before the first readable input (a directory whose first name sorts
    first, a -V list, repeated -r): reported, each on its line, and the rest read as when they
    come later (the outcome does not hang on the names' order); exit 1. All of them damaged:
    each reported, no output made."""
    d = tmp_path / "dir"
    d.mkdir()
    gen_capture.generate(d / "b.pcap", 300, seed=63)
    whole = (d / "b.pcap").read_bytes()
    (d / "a.pcap").write_bytes(whole[:10])
    (d / "c.pcap").write_bytes(b"BZh not a capture at all, but named one\n")
    want = count_tcpdump(d / "b.pcap", "tcp")
    for args in (["-r", d], ["-r", d / "a.pcap", "-r", d / "c.pcap", "-r", d / "b.pcap"]):
        for j in ("1", "2"):
            out = tmp_path / f"o{j}.pcap"
            r = run(*args, "-j", j, "-w", out, "tcp", check=False)
            errors = [line for line in r.stderr.splitlines() if line.startswith("pfilter: ") and "warning" not in line]
            assert r.returncode == 1 and "Traceback" not in r.stderr and errors[0].startswith(f"pfilter: {d / 'a.pcap'}: ")
            assert count_tcpdump(out, "") == want
            r = run(*args, "-j", j, "--count", "tcp", check=False)
            assert r.returncode == 1 and r.stdout == f"{want} packets\n"
    out = tmp_path / "none.pcap"
    r = run("-r", d / "a.pcap", "-r", d / "c.pcap", "-w", out, "tcp", check=False)
    errors = [line for line in r.stderr.splitlines() if line.startswith("pfilter: ") and "warning" not in line]
    assert r.returncode == 1 and len(errors) == 2 and not out.exists()


def test_merge_equals_mergecap_of_tcpdumps_outputs(inputs, tmp_path):
    d, paths = inputs
    # a nanosecond and a pcapng input too, and an input with repeated timestamps (ties)
    ns = tmp_path / "ns.pcap"
    gen_capture.generate(ns, 700, seed=30, nanosecond=True)
    ng = tmp_path / "ng.pcapng"
    gen_capture.generate(ng, 600, seed=31, pcapng=True)
    srcs = paths + [str(ns), str(ng)] + [paths[0]]          # the same file twice: every timestamp ties
    for expr, (fmt, res) in zip(EXPRS, [("pcap", "--micro"), ("nsecpcap", "--nano")]):
        parts = []
        for k, p in enumerate(srcs):
            parts.append(tmp_path / f"m{k}.pcap")
            tcpdump("-r", p, "-w", parts[-1], *(["--nano"] if res == "--nano" else []), expr)
        merged = tmp_path / "mergecap.pcap"
        subprocess.run([ref.mergecap(), "-F", fmt, "-w", merged, *parts], check=True)
        out = tmp_path / "merged.pcap"
        inputs_args = sum((["-r", p] for p in srcs), [])
        run("--quiet", "--merge", res, "-w", out, *inputs_args, expr)
        got, want = records(out), records(merged)
        assert len(got) == len(want) and got == want
        c = run("--quiet", "--merge", "--count", *inputs_args, expr)
        assert c.stdout == f"{len(want)} packets\n"


@pytest.mark.parametrize("window", [None, 2048], ids=["windows", "tiny-windows"])
def test_merge_of_interleaved_unsorted_inputs_equals_mergecap(tmp_path, monkeypatch, capsys, window):
    """Inputs whose packets alternate, whose timestamps go back here and there and tie across
    inputs, merged a batch at a time (pfilter.capture.merge._merge_batches), batches of a few
    packets too (tiny windows): mergecap's order exactly, with -c cutting it anywhere."""
    import random
    from pfilter import cli
    from pfilter.capture import merge
    if window:
        monkeypatch.setattr(merge, "MERGE_MEMORY_BYTES", window)
        monkeypatch.setattr(merge, "MERGE_MIN_WINDOW_BYTES", window)
        monkeypatch.setattr(merge, "MERGE_BATCH_BYTES", window)
    rng = random.Random(7)
    srcs = []
    for k in range(4):
        base = tmp_path / f"base{k}.pcap"
        gen_capture.generate(base, 900, seed=40 + k)
        recs = records(base)
        path = tmp_path / f"in{k}.pcap"
        with open(path, "wb") as f:
            f.write(base.read_bytes()[:24])
            t = 1_700_000_000_000_000
            for ts, cap, wire, data in recs:
                t += rng.choice([0, 0, 1, 2, 5, -3])          # ties, steps back
                f.write(struct.pack("<IIII", t // 1_000_000, t % 1_000_000, cap, wire) + data)
        srcs.append(path)
    want = tmp_path / "mergecap.pcap"
    subprocess.run([ref.mergecap(), "-F", "pcap", "-w", want, *srcs], check=True)
    for extra in ([], ["-c", "1234"]):
        out = tmp_path / "merged.pcap"
        args = ["--quiet", "--merge", *extra, "-w", str(out)] + sum((["-r", str(p)] for p in srcs), [])
        assert cli.main(args) == 0, capsys.readouterr().err
        got = records(out)
        assert got == records(want)[:len(got)] and len(got) == (1234 if extra else 3600)


def test_a_merge_of_more_inputs_than_the_open_file_limit(tmp_path):
    """--merge opens every input at once: with more inputs than the soft limit on open files
    (1,024 on a stock Debian shell) it raises the limit towards the hard one; above the hard
    limit it says so in one line and writes nothing."""
    import resource
    import struct
    d = tmp_path / "many"
    d.mkdir()
    one = tmp_path / "one.pcap"
    gen_capture.generate(one, 450, seed=100)
    data = one.read_bytes()
    at, cuts = 24, []
    while at < len(data):                   # its records, 3 a file
        cuts.append(at)
        at += 16 + struct.unpack_from("<I", data, at + 8)[0]
    for k in range(150):
        end = cuts[3 * k + 3] if 3 * k + 3 < len(cuts) else len(data)
        (d / f"{k:03d}.pcap").write_bytes(data[:24] + data[cuts[3 * k]:end])
    out, want = tmp_path / "merged.pcap", tmp_path / "unlimited.pcap"
    run("--quiet", "--merge", "-w", want, "-r", d, "tcp or udp")
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    for limits in ((64, hard), (64, 64)):
        r = subprocess.run([sys.executable, "-m", "pfilter", "--quiet", "--merge", "-w", str(out), "-r", str(d),
                            "tcp or udp"], capture_output=True, text=True,
                           preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, limits))
        if limits[1] == hard:
            assert r.returncode == 0 and records(out) == records(want) and len(records(want)) > 150, r.stderr
            out.unlink()
        else:
            assert r.returncode == 1 and r.stderr.strip().splitlines() == [
                "pfilter: --merge reads its 150 inputs at once and may open only 64 files (ulimit -Hn): merge "
                "fewer at a time, then merge the outputs"]
            assert not out.exists()


@pytest.mark.parametrize("kind", ["pcap", "pcapng", "nanosecond"])
def test_after_before_equal_editcap_then_tcpdump(tmp_path, kind):
    src = tmp_path / ("in.pcapng" if kind == "pcapng" else "in.pcap")
    gen_capture.generate(src, 4000, seed=40, pcapng=kind == "pcapng", nanosecond=kind == "nanosecond")
    stamps = [r[0] for r in records(src)]
    lo, hi = stamps[1000], stamps[2500]          # exact packet times: the bounds are tested
    cases = [(f"{lo // 10**9}.{lo % 10**9:09d}", f"{hi // 10**9}.{hi % 10**9:09d}"), (None, f"{hi // 10**9}.{hi % 10**9:09d}"),
             (f"{lo // 10**9}.{lo % 10**9:09d}", None)]
    for after, before in cases:
        ed = tmp_path / "ed.pcap"
        cmd = [ref.editcap(), "-F", "nsecpcap" if kind == "nanosecond" else "pcap"]
        if after:
            cmd += ["-A", after]
        if before:
            cmd += ["-B", before]
        subprocess.run(cmd + [str(src), str(ed)], check=True)
        want = tmp_path / "want.pcap"
        tcpdump("-r", ed, "-w", want, *(["--nano"] if kind == "nanosecond" else []), "tcp")
        out = tmp_path / "out.pcap"
        opts = (["--after", after] if after else []) + (["--before", before] if before else [])
        run("--quiet", "-r", src, "-w", out, *opts, "tcp")
        assert records(out) == records(want)
        assert len(records(want)) > 100
        n = run("--quiet", "-r", src, "--count", *opts, "tcp")
        assert n.stdout == f"{len(records(want))} packets\n"


def _pcap_at(path, seconds):
    """A microsecond pcap of one small frame a second in `seconds` (each an unsigned 32-bit
    number of seconds, as the pcap specification has them)."""
    frame = bytes(12) + b"\x08\x00" + bytes(46)
    recs = b"".join(struct.pack("<IIII", s, 250000, len(frame), len(frame)) + frame for s in seconds)
    path.write_bytes(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1) + recs)
    return path


def test_times_from_2038_on_merge_convert_and_select_as_mergecap_and_editcap_do(tmp_path):
    # seconds of 2**31 and more are 2038-2106 to the pcap specification, mergecap and editcap
    # (libpcap 1.10.3 reads them signed: 1901-1969, before every other time)
    a = _pcap_at(tmp_path / "a.pcap", [1_000_000_000, 0x80000010, 0xA0000000])
    b = _pcap_at(tmp_path / "b.pcap", [0x7FFFFFF0, 0x90000000, 0xB0000000])
    want = tmp_path / "want.pcap"
    subprocess.run([ref.mergecap(), "-F", "pcap", "-w", want, a, b], check=True)
    out = tmp_path / "merged.pcap"
    run("--quiet", "--merge", "-w", out, "-r", a, "-r", b, "")
    got = records(out)
    assert got == records(want) and [t // 10**9 for t, *_ in got] == sorted(t // 10**9 for t, *_ in got)
    # to pcapng: the same times as editcap's conversion (pcapng's are 64-bit: no sign to guess)
    ng_want, ng = tmp_path / "want.pcapng", tmp_path / "a.pcapng"
    subprocess.run([ref.editcap(), "-F", "pcapng", a, ng_want], check=True)
    run("--quiet", "-r", a, "-w", ng, "")
    assert [r[0] for r in records(ng)] == [r[0] for r in records(ng_want)] == [r[0] for r in records(a)]
    # --after / --before: through the index (pcap) and by scanning (pcapng), as editcap selects
    for after, before in (("2038-01-19T03:14:00Z", None), (None, "2050-01-01T00:00:00Z"),
                          ("2038-01-19T03:14:20Z", "2100-01-01T00:00:00Z")):
        ed = tmp_path / "ed.pcap"
        cmd = [ref.editcap(), "-F", "pcap"] + (["-A", after[:-1]] if after else []) + (["-B", before[:-1]] if before else [])
        subprocess.run(cmd + [str(a), str(ed)], check=True, env={**os.environ, "TZ": "UTC"})
        opts = (["--after", after] if after else []) + (["--before", before] if before else [])
        for src in (a, ng):
            c = run("--quiet", "-r", src, "--count", *opts, "")
            assert c.stdout == f"{len(records(ed))} packets\n", (src, after, before)


def test_an_input_of_another_link_type_into_one_pcap_is_named(tmp_path):
    a = _pcap_at(tmp_path / "a.pcap", [1_000_000_000])
    b = tmp_path / "b.pcap"
    b.write_bytes(a.read_bytes()[:20] + struct.pack("<I", 113) + a.read_bytes()[24:])   # LINUX_SLL
    out = tmp_path / "out.pcap"
    r = run("-r", a, "-r", b, "-w", out, "", check=False)
    assert r.returncode == 1 and not out.exists()
    assert r.stderr.splitlines()[-1] == (f"pfilter: {b}: link type 113 cannot go into {out}, a pcap file of link "
                                         f"type 1: write pcapng instead (name the output .pcapng)")
    run("--quiet", "-r", a, "-r", b, "-w", tmp_path / "out.pcapng", "")
    assert [r[1] for r in records(tmp_path / "out.pcapng")] == [60, 60]


def test_a_window_over_a_damaged_capture_reports_the_damage(tmp_path):
    # the window's walk stops at the damage: the scan then says where it is, as without a window
    src = tmp_path / "in.pcap"
    gen_capture.generate(src, 3000, seed=71)
    data = bytearray(src.read_bytes())
    offsets = [r for r in _record_offsets(data)]
    bad = tmp_path / "bad.pcap"
    data[offsets[2000] + 8:offsets[2000] + 12] = (0x7FFFFFF0).to_bytes(4, "little")
    bad.write_bytes(bytes(data))
    cut = tmp_path / "cut.pcap"
    cut.write_bytes(src.read_bytes()[:offsets[2500] + 30])
    t = records(src)[1000][0]
    for path, where in ((bad, offsets[2000]), (cut, offsets[2500])):
        plain = run("-r", path, "--count", "tcp", check=False)
        assert plain.returncode == 1 and f"offset {where}:" in plain.stderr
        for opts in (["--after", str(t // 10**9)], ["--before", str(t // 10**9 + 1)]):
            for j in ("1", "2"):
                r = run("-r", path, *opts, "-j", j, "--count", "tcp", check=False)
                errors = [line for line in r.stderr.splitlines() if line.startswith("pfilter: ") and "warning" not in line]
                assert r.returncode == 1 and errors == [f"pfilter: {path}: offset {where}: " +
                                                        plain.stderr.split(f"offset {where}: ")[1].splitlines()[0]]


def _record_offsets(data):
    pos = 24
    while pos + 16 <= len(data):
        yield pos
        pos += 16 + int.from_bytes(data[pos + 8:pos + 12], "little")


@pytest.mark.parametrize("opts, says", [
    (["--after", "1700000002", "--before", "1700000001"], "is later than --before"),
    (["--after", ""], "invalid time"),
    (["--before", "1700000001.0000000001"], "at most 9 digits"),
    (["--after", "1_700_000_001"], "invalid time"),
    (["--after", "2023-11-14T22:13:20+24:00"], "no such zone offset"),
    (["--after", "2023-11-14T22:13:20+01:99"], "no such zone offset"),
    (["--after", "\uff11\uff17\uff10\uff10"], "invalid time"),        # full-width digits
])
def test_a_window_editcap_would_refuse_or_misread_is_refused(tmp_path, opts, says):
    src = tmp_path / "in.pcap"
    gen_capture.generate(src, 50, seed=72)
    r = run("-r", src, *opts, "--count", "", check=False)
    assert r.returncode == 1 and says in r.stderr and r.stderr.count("\n") == 1, r.stderr


def test_the_api_takes_a_time_as_ns_or_text_not_a_float(tmp_path):
    src = tmp_path / "in.pcap"
    gen_capture.generate(src, 100, seed=75)
    t = records(src)[40][0]
    assert pfilter.filter_file(str(src), None, "", after=t).read == 60
    assert pfilter.filter_file(str(src), None, "", after=f"{t // 10**9}.{t % 10**9:09d}").read == 60
    with pytest.raises(pfilter.FilterError, match="as a float"):
        pfilter.filter_file(str(src), None, "", after=t / 1e9)


def test_times_past_what_a_capture_holds_and_local_summer_time(tmp_path):
    src = tmp_path / "in.pcap"
    gen_capture.generate(src, 200, seed=73)
    everything = run("-r", src, "--count", "")
    assert run("-r", src, "--before", "2300-01-01T00:00Z", "--count", "").stdout == everything.stdout
    assert run("-r", src, "--after", "0001-01-01T00:00+01:00", "--count", "").stdout == everything.stdout
    # a zone-less time in the hour a change to summer time skips, and in the one the change back
    # repeats: what editcap's mktime() makes of it
    for when in ("2023-03-26 02:30", "2023-10-29 02:30"):
        stamps = [1679790600, 1679792400, 1679794200, 1698539400, 1698541200, 1698543000, 1698544800]
        w = tmp_path / "dst.pcap"
        with pfilter.open(str(w), "w", linktype="EN10MB", ts_resolution="us") as out:
            out.write(pfilter.PacketBatch.from_packets([bytes(60)] * len(stamps),
                                                       timestamps=[s * 10**9 for s in stamps]))
        env = dict(os.environ, TZ="Europe/Berlin")
        ed = tmp_path / "ed.pcap"
        subprocess.run([ref.editcap(), "-F", "pcap", "-A", when, str(w), str(ed)], check=True, env=env)
        got = subprocess.run([sys.executable, "-m", "pfilter", "-r", str(w), "--after", when, "--count", ""],
                             capture_output=True, text=True, env=env)
        assert got.stdout == f"{len(records(ed))} packets\n", when


def test_the_index_file_is_written_last_and_apart(tmp_path):
    src = tmp_path / "in.pcap"
    gen_capture.generate(src, 100, seed=74)
    idx = tmp_path / "in.idx"
    for bad in (["--after", "bogus", "--count", "tcp"], ["--count", "tcp port ((("]):
        assert run("-r", src, "--index", idx, *bad, check=False).returncode == 1
        assert not idx.exists()
    for opts, says in ((["-w", idx], "names of their own"), (["-w", "-"], None)):
        r = run("-r", src, "--index", "-" if says is None else idx, *opts, "tcp", check=False)
        assert r.returncode == 1 and "Traceback" not in r.stderr
    assert not idx.exists()
    run("-r", src, "--index", idx, "--count", "tcp")
    assert idx.exists()
    # an index that cannot be made is said before the pass: no output written for nothing
    out = tmp_path / "out.pcap"
    r = run("-r", src, "--index", tmp_path / "nodir" / "in.idx", "-w", out, "tcp", check=False)
    assert r.returncode == 1 and r.stderr.splitlines()[-1].endswith("nodir/in.idx: No such file or directory")
    assert not out.exists()
    # a damaged input: its line, no index, and the summary of the packets before the damage
    cut = tmp_path / "cut.pcap"
    cut.write_bytes(src.read_bytes()[:-30])
    plain = run("-r", cut, "--count", "tcp", check=False)
    r = run("-r", cut, "--index", tmp_path / "cut.idx", "--count", "tcp", check=False)
    assert r.returncode == plain.returncode == 1 and r.stdout == plain.stdout
    timeless = lambda text: [line.split(" in ")[0] for line in text.splitlines()]    # noqa: E731
    assert timeless(r.stderr) == [line + (" (no index written)" if "truncated" in line else "")
                                  for line in timeless(plain.stderr)]
    assert not (tmp_path / "cut.idx").exists()


def test_after_before_iso_8601_and_through_the_index(tmp_path):
    src = tmp_path / "in.pcap"
    gen_capture.generate(src, 3000, seed=41)
    stamps = [r[0] for r in records(src)]
    t = stamps[1500]
    import datetime
    iso = datetime.datetime.fromtimestamp(t // 10**9, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S") \
        + f".{t % 10**9:09d}Z"
    a = pfilter.filter_file(str(src), str(tmp_path / "a.pcap"), "", after=iso)
    b = pfilter.filter_file(str(src), str(tmp_path / "b.pcap"), "", after=t)
    assert a.written == b.written == 1500 == a.read       # the window is read, nothing else
    assert records(tmp_path / "a.pcap") == records(src)[1500:]
    r = run("-r", src, "--after", "soon", "tcp", check=False)
    assert r.returncode == 1 and "invalid time" in r.stderr and "Traceback" not in r.stderr


def test_after_before_on_a_capture_whose_time_goes_back(tmp_path):
    """Timestamps out of order: no single run of records; the window is applied by scanning."""
    from pfilter.capture.index import window_range
    one = tmp_path / "one.pcap"
    gen_capture.generate(one, 2000, seed=42)
    data = one.read_bytes()
    src = tmp_path / "twice.pcap"
    src.write_bytes(data + data[24:])                  # the records again: time jumps back
    assert window_range(str(src), 0, None) is None and window_range(str(one), 0, None) == (24, len(data))
    stamps = [r[0] for r in records(one)]
    after, before = stamps[500], stamps[1500]
    a, b = f"{after // 10**9}.{after % 10**9:09d}", f"{before // 10**9}.{before % 10**9:09d}"
    ed = tmp_path / "ed.pcap"
    subprocess.run([ref.editcap(), "-F", "pcap", "-A", a, "-B", b, str(src), str(ed)], check=True)
    want = tmp_path / "want.pcap"
    tcpdump("-r", ed, "-w", want, "udp port 53 or icmp")
    out = tmp_path / "out.pcap"
    run("--quiet", "-r", src, "--after", a, "--before", b, "-w", out, "udp port 53 or icmp")
    assert records(out) == records(want) and len(records(want)) > 20


# Packets every 37 s and a quarter from 20 h before 2020-01-01T00:00:00Z to 20 h after: a zone,
# a minute or a second misread moves the first packet kept.
_GRID_ORIGIN = 1577836800


@pytest.fixture(scope="module")
def time_grid(tmp_path_factory):
    import dpkt
    path = tmp_path_factory.mktemp("grid") / "grid.pcap"
    with open(path, "wb") as f:
        w = dpkt.pcap.Writer(f)
        for k in range(-2000, 2000):
            w.writepkt(bytes(range(60)), ts=_GRID_ORIGIN + 37 * k + 0.25)
    return path


@pytest.mark.parametrize("zone", ["UTC", "Asia/Kolkata", "America/New_York"])
@pytest.mark.parametrize("option", ["-A", "-B"])
def test_every_iso_form_editcap_reads_means_the_same(tmp_path, time_grid, zone, option):
    """The forms of a time editcap -A / -B reads (seconds left out, one-digit fields, a fraction
    past nanoseconds, zones Z, +hh, +hhmm, +hh:mm, none: local time) keep the packets editcap
    keeps, in three time zones of the machine (TZ)."""
    env = dict(os.environ, TZ=zone)
    forms = ["2020-01-01 01:02", "2020-01-01T01:02:03", "2020-01-01T01:02:03.5", "2020-01-01T01:02:03,5Z",
             "2020-1-1 1:2:3", "2020-01-01  01:02:03", "2020-01-01T01:02+01:00", "2019-12-31T23:02:03+0530",
             "2020-01-01T01:02:03-05", "2020-01-01T01:02:03.123456789123Z", "2020-01-01 00:59:60",
             "1577840523.5"]
    flag = "--after" if option == "-A" else "--before"
    for form in forms:
        ed = tmp_path / "ed.pcap"
        subprocess.run([ref.editcap(), "-F", "pcap", option, form, str(time_grid), str(ed)], check=True, env=env)
        out = tmp_path / "out.pcap"
        r = subprocess.run([sys.executable, "-m", "pfilter", "--quiet", "-r", str(time_grid), flag, form, "-w", str(out)],
                           capture_output=True, text=True, env=env)
        assert r.returncode == 0, (form, r.stderr)
        want = records(ed)
        assert 0 < len(want) < 4000, form           # the window cuts the grid
        assert records(out) == want, (zone, form)


@pytest.mark.parametrize("text, says", [
    ("2020-01-01", "a date needs a time of day (2020-01-01T00:00)"),
    ("2020-13-01", "no such date"),              # (not a time of day to add to it)
    ("2020-01-01 01:02:03 +01:00", "write the zone right after the time, without a space (2020-01-01 01:02:03+01:00)"),
    ("2020-01-01 01:02:03 later", "give epoch seconds"),
    ("2020-01-01t01:02:03z", "give epoch seconds"),
    ("2020-01-01T24:00", "no such date or time of day"),
    ("2020-02-30T00:00", "no such date or time of day"),
])
def test_a_time_editcap_would_misread_is_refused(tmp_path, time_grid, text, says):
    """Forms editcap takes without a word but reads otherwise than written (a date alone as that
    many seconds after 1970, a zone after a space ignored, text after the time ignored, lowercase
    t and z, hour 24 and 30 February as epoch numbers, keeping every packet) are refused: one
    line, status 1, no output."""
    out = tmp_path / "out.pcap"
    r = subprocess.run([sys.executable, "-m", "pfilter", "-r", str(time_grid), "--after", text, "-w", str(out)],
                       capture_output=True, text=True)
    assert r.returncode == 1
    assert r.stderr.startswith(f"pfilter: invalid time {text!r}: {says}")
    assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr
    assert not out.exists()


@pytest.mark.parametrize("tail", [["--count", "tcp"], ["-w", "OUT", "tcp"], ["-n", "icmp"]],
                         ids=["count", "write", "print"])
@pytest.mark.parametrize("fast", [True, False], ids=["fast", "general"])
def test_every_input_of_a_list_is_announced_as_tcpdump_announces_it(inputs, tmp_path, tail, fast):
    # tcpdump -V prints its "reading from file" line as it opens each file of the list, between
    # the previous file's packets and this one's: the same lines at the same places (standard
    # error into standard output); printing takes the general path, copying and counting the
    # fast one unless PFILTER_NO_FASTPATH is set. (With -c, tcpdump announces the files after the
    # count is reached too, and reads nothing from them; pfilter stops at the count.)
    _d, paths = inputs
    listing = tmp_path / "list.txt"
    listing.write_text("\n".join(paths) + "\n")
    args = ["-V", str(listing)] + [str(tmp_path / "o.pcap") if a == "OUT" else a for a in tail]
    # (as root, tcpdump gives its privileges up after the first file unless -Z root: the test's
    # directories are root's own)
    stay = ["-Z", "root"] if os.geteuid() == 0 else []
    theirs = subprocess.run([ref.tcpdump(), *stay, *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    env = dict(os.environ, PFILTER_NO_FASTPATH="0" if fast else "1")
    ours = subprocess.run([sys.executable, "-m", "pfilter", *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True, env=env)
    assert theirs.returncode == ours.returncode == 0, ours.stdout

    def announced(text):
        return [(n, line) for n, line in enumerate(text.splitlines()) if line.startswith("reading from file")]
    assert len(announced(theirs.stdout)) == len(paths)
    assert announced(ours.stdout) == announced(theirs.stdout)


@pytest.mark.parametrize("tail", [["--count", "tcp"], ["-w", "OUT", "tcp"]], ids=["count", "write"])
def test_merged_inputs_are_all_announced_as_they_are_opened(inputs, tmp_path, tail):
    # --merge opens every input before reading a packet: each input's "reading from file" line
    # (tcpdump's, for that file), in the order given, before any other line
    _d, paths = inputs
    stay = ["-Z", "root"] if os.geteuid() == 0 else []
    want = []
    for p in paths:
        theirs = subprocess.run([ref.tcpdump(), *stay, "-r", p, "--count", "tcp"], stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, check=True)
        want += [line for line in theirs.stdout.splitlines() if line.startswith("reading from file")]
    args = [a for p in paths for a in ("-r", p)] + ["--merge"]
    args += [str(tmp_path / "o.pcap") if a == "OUT" else a for a in tail]
    ours = subprocess.run([sys.executable, "-m", "pfilter", *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True)
    assert ours.returncode == 0, ours.stdout
    assert len(want) == len(paths) and ours.stdout.splitlines()[:len(paths)] == want
    assert sum(line.startswith("reading from file") for line in ours.stdout.splitlines()) == len(paths)


def test_rotated_outputs_of_many_inputs_check_each_input_once(tmp_path, monkeypatch):
    """-C rotation over many inputs: every output file refuses to replace an input, but the inputs
    are looked up once for the call, not once per output file (outputs x inputs stats: 39 x 24
    here, millions for thousands of inputs)."""
    import pfilter.capture.files as files
    d = tmp_path / "in"
    d.mkdir()
    paths = []
    for i in range(24):
        p = d / f"{i:02}.pcap"
        gen_capture.generate(p, 60, seed=40 + i)
        paths.append(str(p))
    looked = []
    real_stat = os.stat

    def stat(path, *a, **kw):
        if sys._getframe(1).f_code.co_filename == files.__file__:    # the overwrite checks
            looked.append(os.fspath(path))
        return real_stat(path, *a, **kw)

    monkeypatch.setattr(files.os, "stat", stat)
    out = tmp_path / "out.pcap"
    stats = pfilter.filter_file(paths, str(out), "", rotate={"size": 20000})
    written = sorted(tmp_path.glob("out.pcap*"))
    assert len(written) >= 8 and stats.matched == 24 * 60
    assert sum(len(records(p)) for p in written) == 24 * 60
    assert max(looked.count(p) for p in paths) == 1
    # still refused: a rotated name that is one of the inputs
    for p in written:
        p.unlink()
    victim = tmp_path / "out.pcap3"
    victim.write_bytes(open(paths[0], "rb").read())
    before = victim.read_bytes()
    with pytest.raises(pfilter.FilterError, match="-C would rotate into the input file .*out.pcap3: refusing"):
        pfilter.filter_file(paths + [str(victim)], str(out), "", rotate={"size": 20000})
    assert victim.read_bytes() == before and not out.exists()      # (refused before the first file)


def test_an_output_that_would_be_another_outputs_directory_is_refused_before_any(inputs, tmp_path):
    """-w DIR/ of DIR/sub.pcap.gz (written as sub.pcap) and DIR/sub.pcap/c.pcap (written as
    sub.pcap/c.pcap): refused before any output, not after the first ones."""
    import gzip
    import shutil
    _d, paths = inputs
    d = tmp_path / "in"
    (d / "sub.pcap").mkdir(parents=True)
    (d / "sub.pcap.gz").write_bytes(gzip.compress(open(paths[0], "rb").read()))
    shutil.copy(paths[1], d / "sub.pcap" / "c.pcap")
    shutil.copy(paths[2], d / "z.pcap")
    r = run("-r", d, "-w", f"{tmp_path / 'out'}/", "tcp", check=False)
    assert r.returncode == 1 and r.stderr.count("\n") == 1, r.stderr
    assert "the output sub.pcap of" in r.stderr and "would also be the directory of the output sub.pcap/c.pcap" in r.stderr
    assert not (tmp_path / "out").exists()


def test_a_directory_output_takes_one_output_per_input(inputs, tmp_path):
    """-w DIR/ (made when missing) or an existing directory: one output per input, named as the
    input (a pcapng or compressed input's as a pcap file), each what `tcpdump -r IN -w OUT` writes
    for it, as pfilter.dask and --scheduler write a directory; -j 1 and 2 alike. A damaged input
    is reported on its line, the others written, exit 1. Refused in one line, nothing written:
    two inputs of one name, --merge or -C into it, standard input, an output that is an input."""
    import gzip
    d, paths = inputs
    packed = tmp_path / "packed.pcap.gz"
    packed.write_bytes(gzip.compress(open(paths[0], "rb").read()))
    cut = tmp_path / "cut.pcap"
    cut.write_bytes(open(paths[1], "rb").read()[:30000])
    sources = [paths[1], str(packed), paths[2], str(cut)]
    for j, out in (("1", tmp_path / "new" / "deeper"), ("2", tmp_path / "existing")):
        given = str(out) + os.sep if j == "1" else str(out)
        if j == "2":
            out.mkdir()
        r = run(*[a for s in sources for a in ("-r", s)], "-j", j, "-w", given, "tcp", check=False)
        assert r.returncode == 1 and "Traceback" not in r.stderr
        assert [line for line in r.stderr.splitlines() if line.startswith("pfilter: ")] == [
            line for line in r.stderr.splitlines() if line.startswith(f"pfilter: {cut}: offset ")]
        assert sorted(os.listdir(out)) == ["b.pcap", "c.pcap", "cut.pcap", "packed.pcap"]
        plain = [paths[1], paths[0], paths[2], str(cut)]      # (tcpdump reads no gzip: its original)
        for src, name in zip(plain, ["b.pcap", "packed.pcap", "c.pcap", "cut.pcap"]):
            want = tmp_path / "want.pcap"
            want.unlink(missing_ok=True)
            subprocess.run([ref.tcpdump(), "-r", src, "-w", str(want), "tcp"], capture_output=True)
            assert (out / name).read_bytes() == want.read_bytes(), name
    again = tmp_path / "again"
    other = tmp_path / "other" / "a.pcap"
    other.parent.mkdir()
    other.write_bytes(open(paths[1], "rb").read())
    for argv, says in ((["-r", paths[0], "-r", paths[0]], f"{paths[0]} is given twice"),
                       (["-r", paths[0], "-r", other], f"several inputs would write a.pcap ({paths[0]} and {other})"),
                       (["-r", paths[0], "-r", paths[1], "--merge"], "--merge, -C and -G write one output"),
                       (["-r", paths[0], "-C", "1"], "--merge, -C and -G write one output"),
                       (["-r", "-"], "standard input has no name")):
        r = run(*argv, "-w", str(again) + os.sep, "tcp", check=False)
        assert r.returncode == 1 and says in r.stderr.splitlines()[-1] and "Traceback" not in r.stderr, r.stderr
    r = run("-r", d, "-w", os.path.dirname(paths[0]), "tcp", check=False)
    assert r.returncode == 1 and "refusing to overwrite the input file" in r.stderr.splitlines()[-1]
    assert not again.exists() or not os.listdir(again)
    plain = tmp_path / "plain"
    plain.write_text("a file\n")
    r = run("-r", paths[0], "-w", str(plain) + os.sep, "tcp", check=False)
    assert r.returncode == 1 and r.stderr.splitlines()[-1] == f"pfilter: {plain}{os.sep}: Not a directory"
    # an input of a link type the expression means nothing on: named on its line, the others written
    raw = tmp_path / "raw.pcap"
    pfilter.Writer(str(raw), linktype="RAW").close()
    out = tmp_path / "mixed"
    r = run("-r", paths[0], "-r", raw, "-r", paths[2], "-w", str(out) + os.sep, "ether host 00:11:22:33:44:55",
            check=False)
    errors = [line for line in r.stderr.splitlines() if line.startswith("pfilter: ")]
    assert r.returncode == 1 and len(errors) == 1 and errors[0].startswith(f"pfilter: {raw}: ")
    assert sorted(os.listdir(out)) == ["a.pcap", "c.pcap"]
    # under a -r DIR, an input keeps its path there (two days' eth0.pcap stay apart), as cp -r
    tree = tmp_path / "tree"
    for day, src in (("day1", paths[0]), ("day2", paths[1])):
        (tree / day).mkdir(parents=True)
        (tree / day / "eth0.pcap").write_bytes(open(src, "rb").read())
    out = tmp_path / "days"
    run("-r", tree, "-r", paths[2], "-w", str(out) + os.sep, "tcp")
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*.pcap")) == ["c.pcap", "day1/eth0.pcap",
                                                                             "day2/eth0.pcap"]
    for day, src in (("day1", paths[0]), ("day2", paths[1])):
        want = tmp_path / "want.pcap"
        subprocess.run([ref.tcpdump(), "-r", src, "-w", str(want), "tcp"], capture_output=True)
        assert (out / day / "eth0.pcap").read_bytes() == want.read_bytes()


def test_an_interrupted_directory_output_says_what_all_its_outputs_hold(inputs, tmp_path, monkeypatch, capsys):
    """Interrupted at its second input, -w DIR/ names the packets of both outputs, and a merge
    interrupted before its output exists names no file."""
    import pfilter.capture.filterfile as ff
    from pfilter import cli
    d, paths = inputs
    real = ff.filter_file

    def second_interrupted(src, dst, *a, **k):
        if src == paths[1]:
            open(dst, "wb").close()                 # (what it had written: kept, as tcpdump keeps it)
            err = KeyboardInterrupt()
            err.stats = pfilter.FilterStats(read=7, matched=3, written=3, files=[src])
            raise err
        return real(src, dst, *a, **k)
    monkeypatch.setattr(ff, "filter_file", second_interrupted)
    first = pfilter.filter_file(paths[0], None, "tcp")
    status = cli.main(["-r", paths[0], "-r", paths[1], "-w", str(tmp_path / "out") + os.sep, "tcp"])
    line = capsys.readouterr().err.splitlines()[-1]
    assert status == 130 and line == (f"pfilter: interrupted by SIGINT: {first.matched + 3} packets written to "
                                      f"{tmp_path / 'out'}{os.sep} ({first.read + 7} read); "
                                      f"{tmp_path / 'out' / 'b.pcap'} ends where its input was interrupted")
    err = KeyboardInterrupt()
    err.stats = pfilter.FilterStats()
    assert cli._interrupted(cli.parse_args(cli.build_parser(), ["-r", paths[0], "--merge", "-w",
                                                                 str(tmp_path / "none.pcap")]), err) == 130
    assert capsys.readouterr().err == "pfilter: interrupted by SIGINT: 0 packets written (0 read)\n"


def test_merge_takes_snaplen_dedup_and_rotation_as_editcap_and_tcpdump_after_mergecap(inputs, tmp_path):
    """--merge with --snaplen, --dedup and -C: the files tcpdump -C writes from `mergecap` of
    tcpdump's outputs cut by `editcap -s N -D W` (it was refused: "--merge writes one plain
    output"). Two inputs are the same file, so that every packet of it has a duplicate."""
    d, paths = inputs
    srcs = [paths[0], paths[1], paths[0], paths[3]]
    parts = []
    for k, p in enumerate(srcs):
        parts.append(tmp_path / f"m{k}.pcap")
        tcpdump("-r", p, "-w", parts[-1], "ip")
    merged, edited = tmp_path / "mergecap.pcap", tmp_path / "edited.pcap"
    subprocess.run([ref.mergecap(), "-F", "pcap", "-w", merged, *parts], check=True)
    subprocess.run([ref.editcap(), "-F", "pcap", "-s", "600", "-D", "3", merged, edited], check=True,
                   capture_output=True)
    want_dir, got_dir = tmp_path / "want", tmp_path / "got"
    want_dir.mkdir()
    got_dir.mkdir()
    tcpdump("-Z", "root", "-r", edited, "-w", want_dir / "o.pcap", "-C", "1")
    run("--quiet", "--merge", *sum((["-r", p] for p in srcs), []), "-w", got_dir / "o.pcap",
        "--snaplen", "600", "--dedup=3", "-C", "1", "ip")
    want = sorted(p.name for p in want_dir.iterdir())
    assert len(want) >= 2 and sorted(p.name for p in got_dir.iterdir()) == want
    for name in want:
        assert records(got_dir / name) == records(want_dir / name), name


def test_each_input_is_announced_once_when_counting_a_mixed_list(inputs, tmp_path):
    """Counting pcap files and a pcapng one with several workers: the fast path (pcap only)
    declines the list, and announce(path, linktype, snaplen, index) is called once per input,
    in order (it announced the pcap files, declined, and the general path announced them again)."""
    _d, paths = inputs
    ng = tmp_path / "ng.pcapng"
    gen_capture.generate(ng, 300, seed=33, pcapng=True)
    for srcs in ([paths[0], str(ng)], [paths[0], paths[1], str(ng)], [str(ng), paths[0]]):
        calls = []
        stats = pfilter.filter_file(srcs, None, "tcp", workers=2, announce=lambda *a: calls.append((a[0], a[3])))
        assert [c[1] for c in calls] == list(range(len(srcs))) and [str(c[0]) for c in calls] == srcs
        assert stats.matched == sum(count_tcpdump(s, "tcp") for s in srcs)
