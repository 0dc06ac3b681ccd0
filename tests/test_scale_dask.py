"""pfilter.dask on a real LocalCluster with two worker processes (issue 20): counts, outputs
(one file, a directory) and classifications equal the local calls', large files split into index
ranges across the workers; the CLI's --scheduler; without dask.distributed, one error naming
the extra."""
import os
import re
import shutil
import subprocess
import sys
import time

import numpy as np
import pytest

import pfilter
import reference as ref

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "scripts"))
import gen_capture  # noqa: E402

distributed = pytest.importorskip("distributed") if os.environ.get("CI", "").lower() != "true" else __import__("distributed")
import pfilter.dask as pdask  # noqa: E402

RULES = {"web": "tcp port 80 or tcp port 443", "dns": "udp port 53", "icmp": "icmp or icmp6"}


@pytest.fixture(scope="module")
def client():
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0")
    c = distributed.Client(cluster)
    yield c
    c.close()
    cluster.close()


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    d = tmp_path_factory.mktemp("dask")
    paths = []
    for i in range(3):
        p = d / f"in{i}.pcap"
        gen_capture.generate(p, 2500 + 500 * i, seed=50 + i)
        paths.append(str(p))
    ng = d / "in3.pcapng"
    gen_capture.generate(ng, 800, seed=60, pcapng=True)
    paths.append(str(ng))
    return paths


def tcpdump_count(path, expr):
    out = subprocess.run([ref.tcpdump(), "-n", "-r", path, expr], check=True, capture_output=True)
    return len(out.stdout.splitlines())


@pytest.mark.parametrize("expr", ["tcp", "udp port 53 or icmp"])
def test_count_equals_local_and_tcpdump(client, inputs, expr):
    want = sum(tcpdump_count(p, expr) for p in inputs)
    # 300 KB ranges: every pcap input is cut into several tasks
    assert pdask.count(inputs, expr, client=client, range_bytes=300_000) == want
    assert pdask.count(inputs, expr, client=client) == want
    assert pfilter.filter_file(inputs, None, expr).matched == want
    ranges = client.gather(client.map(pdask._plan_file, inputs, [300_000] * len(inputs), pure=False))
    assert all(len(r) > 3 for r in ranges[:3]) and ranges[3] == [None]


def test_filter_files_byte_identical_to_local(client, inputs, tmp_path):
    local = tmp_path / "local.pcap"
    pfilter.filter_file(inputs[:3], str(local), "tcp")
    out = tmp_path / "dask.pcap"
    stats = pdask.filter_files(inputs[:3], "tcp", str(out), client=client, range_bytes=300_000)
    assert out.read_bytes() == local.read_bytes()
    assert stats.written == pfilter.filter_file(inputs[:3], None, "tcp").matched
    assert sorted(os.listdir(tmp_path)) == ["dask.pcap", "local.pcap"]        # no parts left behind
    # with a pcapng input among them (one task for that file)
    pfilter.filter_file(inputs, str(local), "udp port 53")
    pdask.filter_files(inputs, "udp port 53", str(out), client=client, range_bytes=300_000)
    assert out.read_bytes() == local.read_bytes()


def test_seconds_are_the_calls_wall_time(client, inputs, tmp_path, monkeypatch):
    """The stats' seconds are the call's, as the local calls' (the summary line's "in N s"), not
    one task's: here the planning, in this process, is made to take 0.3 s more."""
    import time
    real = pdask._plan
    monkeypatch.setattr(pdask, "_plan", lambda *a: time.sleep(0.3) or real(*a))
    for call in (lambda: pdask.count_stats(inputs, "tcp", client=client),
                 lambda: pdask.filter_files(inputs, "tcp", str(tmp_path / "out"), client=client)):
        started = time.perf_counter()
        stats = call()
        assert 0.3 <= stats.seconds <= time.perf_counter() - started


def test_filter_files_into_a_directory(client, inputs, tmp_path):
    d = tmp_path / "out"
    pdask.filter_files(inputs[:3], "ip and tcp port 80", str(d) + os.sep, client=client, range_bytes=300_000)
    assert sorted(os.listdir(d)) == ["in0.pcap", "in1.pcap", "in2.pcap"]
    for p in inputs[:3]:
        want = tmp_path / "want.pcap"
        subprocess.run([ref.tcpdump(), "-r", p, "-w", str(want), "ip and tcp port 80"], check=True,
                       stderr=subprocess.DEVNULL)
        assert (d / os.path.basename(p)).read_bytes() == want.read_bytes()
    # the command writes a directory alike, with --scheduler and without (pcapng: a pcap file)
    for how in ([], ["--scheduler", client.scheduler.address]):
        e = tmp_path / f"cli{len(how)}"
        r = subprocess.run([sys.executable, "-m", "pfilter", *[a for p in inputs for a in ("-r", p)], "-w",
                            str(e) + os.sep, *how, "ip and tcp port 80"], capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        assert sorted(os.listdir(e)) == ["in0.pcap", "in1.pcap", "in2.pcap", "in3.pcap"]
        for name in ("in0.pcap", "in1.pcap", "in2.pcap"):
            assert (e / name).read_bytes() == (d / name).read_bytes()
    assert (tmp_path / "cli0" / "in3.pcap").read_bytes() == (tmp_path / "cli2" / "in3.pcap").read_bytes()
    # inputs under a directory (names=: the -r DIR given) keep their paths under it, as the command's
    tree = tmp_path / "tree"
    for day in ("day1", "day2"):
        (tree / day).mkdir(parents=True)
        shutil.copy(inputs[0], tree / day / "eth0.pcap")
    days = [str(tree / "day1" / "eth0.pcap"), str(tree / "day2" / "eth0.pcap")]
    with pytest.raises(pfilter.FilterError, match="several inputs would write eth0.pcap"):
        pdask.filter_files(days, "tcp", str(tmp_path / "flat") + os.sep, client=client)
    pdask.filter_files(days, "tcp", str(tmp_path / "kept") + os.sep, client=client, names=[str(tree)])
    for how in ([], ["--scheduler", client.scheduler.address]):
        e = tmp_path / f"tree{len(how)}"
        r = subprocess.run([sys.executable, "-m", "pfilter", "-r", str(tree), "-w", str(e) + os.sep, *how, "tcp"],
                           capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        for day in ("day1", "day2"):
            assert (e / day / "eth0.pcap").read_bytes() == (tmp_path / "kept" / day / "eth0.pcap").read_bytes()


def test_relative_paths_are_this_processs_not_the_workers(client, inputs, tmp_path, monkeypatch):
    # a worker's working directory is not ours: names are made absolute before they travel
    monkeypatch.chdir(os.path.dirname(inputs[0]))
    names = [os.path.basename(p) for p in inputs[:2]]
    assert pdask.count(names, "tcp", client=client) == pfilter.filter_file(inputs[:2], None, "tcp").matched
    out = os.path.relpath(tmp_path / "rel.pcap")
    pdask.filter_files(names, "tcp", out, client=client)
    pfilter.filter_file(inputs[:2], str(tmp_path / "local.pcap"), "tcp")
    assert (tmp_path / "rel.pcap").read_bytes() == (tmp_path / "local.pcap").read_bytes()
    rules = tmp_path / "rules.txt"
    rules.write_text("".join(f"{k}: {v}\n" for k, v in RULES.items()))
    got = pdask.classify(names, os.path.relpath(rules), client=client)
    assert (got.counts == pfilter.classify(inputs[:2], RULES).counts).all()


def test_a_ring_s_walks_are_watched(client, inputs, tmp_path, monkeypatch):
    """_ring_parts, watching (_watching), reports while the ring's tasks run the offsets the walks
    have reached as the turns' file tells them (a ring of small inputs may end before the first
    look: here the turns stand still and the task that runs is a sleep)."""
    import mmap
    import time
    from pfilter.capture import _fastcopy
    monkeypatch.setattr(pdask, "RING_PROGRESS_SECONDS", 0.01)
    pcaps = inputs[:3]
    fd = os.open(tmp_path / "turns", os.O_RDWR | os.O_CREAT)
    try:
        os.ftruncate(fd, _fastcopy.RING_BLOCK_BYTES * len(pcaps))
        with mmap.mmap(fd, 0) as ring:
            _fastcopy.ring_init(ring, len(pcaps), 24)
        seen = []
        worker = sorted(client.scheduler_info()["workers"])[0]
        progress = pdask._Progress(lambda done, whole, info: seen.append((done, whole)), [], pcaps)
        assert pdask._ring_parts(client, [client.submit(time.sleep, 0.3, workers=[worker], pure=False)], [worker],
                                 pdask._watching(fd, pcaps, progress)) == [None]
    finally:
        os.close(fd)
    total = sum(os.path.getsize(p) for p in pcaps)
    assert len(seen) > 3 and set(seen) == {(24 * len(pcaps), total)}, seen     # each walk at its first record


def test_many_small_inputs_take_a_task_for_several(client, inputs, tmp_path, monkeypatch):
    """Whole inputs are planned and filtered several to a task (each task costs the scheduler
    and a worker some ms), still at least GROUP_SHARE tasks per worker thread: the same counts,
    outputs and progress as one task per input."""
    import shutil
    small = []
    for k in range(40):
        small.append(str(tmp_path / f"s{k:02d}.pcap"))
        shutil.copy(inputs[k % 3], small[-1])
    calls = []
    for name in ("submit", "map"):
        real = getattr(client, name)
        monkeypatch.setattr(client, name, lambda f, *a, _real=real, **k: calls.append(f.__name__) or _real(f, *a, **k))
    seen = []
    stats = pdask.count_stats(small, "tcp", client=client, progress=lambda done, whole, info: seen.append(done))
    assert stats.matched == pfilter.filter_file(small, None, "tcp").matched and stats.read > 0
    assert seen[-1] == sum(os.path.getsize(p) for p in small) and seen == sorted(seen) and len(seen) > 2
    threads = sum(client.nthreads().values())
    runs = calls.count("_run_parts")
    assert pdask.GROUP_SHARE * threads <= runs < len(small) and "_run_part" not in calls and "_plan_file" not in calls
    out = tmp_path / "out"
    pdask.filter_files(small, "tcp", str(out) + os.sep, client=client)
    for p in small:
        pfilter.filter_file(p, str(tmp_path / "local.pcap"), "tcp")
        assert (out / os.path.basename(p)).read_bytes() == (tmp_path / "local.pcap").read_bytes()
    # classify too (a task an input made a directory of 1,000 small captures 8 times slower)
    calls.clear()
    seen.clear()
    got = pdask.classify(small, RULES, client=client, progress=lambda done, whole, info: seen.append(done))
    want = pfilter.classify(small, RULES)
    assert (got.matrix == want.matrix).all() and (got.counts == want.counts).all() and got.packets == want.packets
    assert pdask.GROUP_SHARE * threads <= calls.count("_classify_files") < len(small)
    assert "_classify_file" not in calls and seen[-1] == sum(os.path.getsize(p) for p in small)


def test_file_errors_name_the_files_as_given(client, inputs, tmp_path, monkeypatch):
    """The workers get absolute paths; the errors name the files as the caller (or the command
    line) did, as without a cluster, and an output that cannot be made leaves nothing."""
    import shutil
    monkeypatch.chdir(tmp_path)
    shutil.copy(inputs[0], "a.pcap")
    for call in (lambda: pdask.count_stats(["a.pcap", "gone.pcap"], "tcp", client=client),
                 lambda: pdask.filter_files(iter(["a.pcap", "gone.pcap"]), "tcp", "out.pcap", client=client),
                 lambda: pdask.classify(["gone.pcap"], RULES, client=client)):
        with pytest.raises(FileNotFoundError) as err:
            call()
        assert err.value.filename == "gone.pcap"
    with pytest.raises(FileNotFoundError) as err:            # the output's directory is missing
        pdask.filter_files(["a.pcap"], "tcp", os.path.join("no", "out.pcap"), client=client)
    assert err.value.filename == os.path.join("no", "out.pcap")
    before = (tmp_path / "a.pcap").read_bytes()
    for out, name in (("a.pcap", "a.pcap"), ("." + os.sep, os.path.join(".", "a.pcap"))):
        with pytest.raises(pfilter.FilterError, match=f"^{re.escape(name)}: refusing to overwrite the input "
                                                      "file a.pcap$"):
            pdask.filter_files(["a.pcap"], "tcp", out, client=client)
    assert (tmp_path / "a.pcap").read_bytes() == before and sorted(os.listdir(tmp_path)) == ["a.pcap"]
    with pytest.raises(pfilter.FilterError, match="standard output cannot be written"):
        pdask.filter_files(["a.pcap"], "tcp", "-", client=client)
    assert sorted(os.listdir(tmp_path)) == ["a.pcap"]
    # the command: one line each, as without --scheduler (standard output refused before any cluster)
    for args, line in ((["-r", "gone.pcap", "--count"], "pfilter: gone.pcap: No such file or directory"),
                       (["-r", "a.pcap", "-w", "a.pcap"], "pfilter: a.pcap: refusing to overwrite the input file a.pcap"),
                       (["-r", "a.pcap", "-w", "-"], "pfilter: standard output cannot be written by a cluster's "
                                                      "workers: give an output file")):
        r = subprocess.run([sys.executable, "-m", "pfilter", "--scheduler", client.scheduler.address, *args, "tcp"],
                           capture_output=True, timeout=120)
        assert r.returncode == 1 and r.stdout == b"", r.stderr
        assert r.stderr.decode().splitlines()[-1] == line and b"Traceback" not in r.stderr


def test_what_one_pcap_output_cannot_hold_is_refused(client, inputs, tmp_path):
    raw = tmp_path / "raw.pcap"
    pfilter.Writer(str(raw), linktype="RAW").close()       # a raw IP capture (no packet)
    with pytest.raises(pfilter.FilterError) as caught:
        pdask.filter_files([inputs[0], str(raw)], "", str(tmp_path / "mixed.pcap"), client=client)
    local = subprocess.run([sys.executable, "-m", "pfilter", "-r", inputs[0], "-r", str(raw), "-w",
                            str(tmp_path / "mixed.pcap"), ""], capture_output=True, text=True)
    said = local.stderr.splitlines()[-1].removeprefix("pfilter: ")
    assert local.returncode == 1 and str(caught.value).split(": give")[0] == said.split(": write")[0]
    with pytest.raises(pfilter.FilterError, match="uncompressed pcap"):
        pdask.filter_files(inputs[:1], "tcp", str(tmp_path / "out.pcap.gz"), client=client)
    # into a directory: every output a pcap file, named for it
    d = tmp_path / "dir"
    pdask.filter_files(inputs[2:], "tcp", str(d) + os.sep, client=client)
    assert sorted(os.listdir(d)) == ["in2.pcap", "in3.pcap"]
    assert (d / "in3.pcap").read_bytes()[:4] == b"\xd4\xc3\xb2\xa1"
    with pytest.raises(pfilter.FilterError, match="standard input"):
        pdask.count(["-"], "tcp", client=client)


def test_classify_equals_local(client, inputs):
    got = pdask.classify(inputs, RULES, client=client)
    want = pfilter.classify(inputs, RULES)
    assert got.rules == want.rules and got.packets == want.packets == sum(2500 + 500 * i for i in range(3)) + 800
    assert (got.counts == want.counts).all() and (got.bytes == want.bytes).all()
    assert np.array_equal(got.matrix, want.matrix) and np.array_equal(got.timestamps, want.timestamps)
    assert list(got.labels()) == list(want.labels())


def test_cli_scheduler_address(client, inputs, tmp_path):
    address = client.scheduler.address
    out = tmp_path / "cli.pcap"
    r = subprocess.run([sys.executable, "-m", "pfilter", "--quiet", "--scheduler", address, "-r", inputs[0], "-r",
                        inputs[1], "-w", str(out), "tcp"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    local = tmp_path / "local.pcap"
    pfilter.filter_file(inputs[:2], str(local), "tcp")
    assert out.read_bytes() == local.read_bytes()
    r = subprocess.run([sys.executable, "-m", "pfilter", "--scheduler", address, "-r", inputs[2], "-r", inputs[1],
                        "--count", "vlan and ip"], capture_output=True, text=True, timeout=120)
    assert r.stdout == f"{tcpdump_count(inputs[2], 'vlan and ip') + tcpdump_count(inputs[1], 'vlan and ip')} packets\n"
    # every input announced as tcpdump announces it, in the order given
    want = [subprocess.run([ref.tcpdump(), "-r", p, "-c", "1"], capture_output=True, text=True).stderr.splitlines()[0]
            for p in (inputs[2], inputs[1])]
    assert [line for line in r.stderr.splitlines() if line.startswith("reading from file")] == want


@pytest.mark.parametrize("how", ["script", "module"])
def test_cli_scheduler_local_from_the_installed_command(inputs, tmp_path, how):
    """--scheduler local as a user runs it: the `pfilter` script (bin/pfilter, which pip installs)
    or python -m pfilter. The LocalCluster's worker processes are spawned, and import the
    program's main file again: it must not run the command a second time in each of them."""
    command = [str(os.path.join(ROOT, "bin", "pfilter"))] if how == "script" else ["-m", "pfilter"]
    out = tmp_path / "cli.pcap"
    r = subprocess.run([sys.executable, *command, "--quiet", "--scheduler", "local", "-r", inputs[0], "-r",
                        inputs[1], "-w", str(out), "tcp"], capture_output=True, text=True, timeout=180)
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr
    local = tmp_path / "local.pcap"
    pfilter.filter_file(inputs[:2], str(local), "tcp")
    assert out.read_bytes() == local.read_bytes()


def test_cli_classify_scheduler_equals_local(client, inputs, tmp_path):
    """`pfilter classify --scheduler ADDRESS`: the same table, labels and warnings (a rule that has
    no meaning on Ethernet: one line, as the local run says it) as without it. The rules file is
    read by this process: it is given by a relative name that no worker's directory holds."""
    (tmp_path / "rules.txt").write_text("web: tcp port 80 or tcp port 443\nair: wlan addr1 0:0:0:0:0:1\n"
                                        "dns: udp port 53\n")
    runs = {}
    for how, extra in (("local", []), ("cluster", ["--scheduler", client.scheduler.address])):
        r = subprocess.run([sys.executable, "-m", "pfilter", "classify", "-r", inputs[0], "-r", inputs[3], "-r",
                            inputs[1], "-R", "rules.txt", "--labels", f"{how}.csv", "--default", "other", *extra],
                           capture_output=True, text=True, timeout=120, cwd=tmp_path,
                           env={**os.environ, "PYTHONPATH": ROOT})
        assert r.returncode == 0, r.stderr
        runs[how] = r.stdout, r.stderr, (tmp_path / f"{how}.csv").read_text()
    assert runs["cluster"] == runs["local"]
    stdout, stderr, labels = runs["local"]
    assert "rule 'air' cannot apply to link type EN10MB" in stderr and stderr.count("\n") == 1, stderr
    assert len(labels.splitlines()) == 2500 + 3000 + 800 + 1 and "web" in stdout


def test_cli_classify_scheduler_refuses_what_it_does_not_do(inputs, tmp_path):
    rules = tmp_path / "rules.txt"
    rules.write_text("web: tcp port 80\n")
    for extra in (["--split", str(tmp_path / "{rule}.pcap")], ["--unmatched", str(tmp_path / "u.pcap")]):
        r = subprocess.run([sys.executable, "-m", "pfilter", "classify", "--scheduler", "local", "-r", inputs[0],
                            "-R", str(rules), *extra], capture_output=True, text=True, timeout=60)
        assert r.returncode == 2 and r.stderr.count("\n") == 1 and "--scheduler takes no" in r.stderr, r.stderr
    assert sorted(os.listdir(tmp_path)) == ["rules.txt"]


@pytest.mark.parametrize("command", [["--count", "tcp"], ["classify", "-R", "RULES"]])
def test_a_task_that_fails_under_scheduler_local_is_one_line(tmp_path, command):
    """A task's failure on a LocalCluster's worker (here: an input that is not there) is the
    command's one line, naming the file: not also the worker's log with its traceback."""
    rules = tmp_path / "rules.txt"
    rules.write_text("web: tcp port 80\n")
    missing = str(tmp_path / "gone.pcap")
    command = [str(rules) if a == "RULES" else a for a in command]
    lead, rest = (command[:1], command[1:]) if command[0] == "classify" else ([], command)
    r = subprocess.run([sys.executable, "-m", "pfilter", *lead, "--scheduler", "local", "-r", missing, *rest],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 1, r.stderr
    assert r.stderr.splitlines() == [f"pfilter{' classify' if lead else ''}: {missing}: No such file or directory"]


def _scheduler_cli(address, inputs, out):
    started = time.monotonic()
    r = subprocess.run([sys.executable, "-m", "pfilter", "--quiet", "--scheduler", address, "-r", inputs[0],
                        "-w", str(out), "tcp"], capture_output=True, text=True, timeout=120)
    return r, time.monotonic() - started


def test_ctrl_c_under_scheduler_local_prints_one_line(tmp_path):
    # Ctrl-C at a terminal reaches the whole process group: the LocalCluster's workers ignore it
    # (no traceback of theirs), and the command says its one line. The input is a FIFO nobody
    # writes: the run waits on it with the cluster up, a worker's task stuck opening it (--quiet:
    # the command itself does not look at it first).
    import signal
    fifo = tmp_path / "in.pcap"
    os.mkfifo(fifo)
    p = subprocess.Popen([sys.executable, "-m", "pfilter", "-r", str(fifo), "--quiet", "--count", "--scheduler", "local",
                          "tcp"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
                         preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:      # the cluster's processes started, and a moment more
            kids = subprocess.run(["pgrep", "-P", str(p.pid)], capture_output=True, text=True).stdout.split()
            if len(kids) >= 2:
                break
            time.sleep(0.2)
        time.sleep(2)
        for _ in range(12):         # (one that comes while the cluster still starts is lost: again)
            os.killpg(p.pid, signal.SIGINT)
            sent = time.monotonic()
            try:
                _out, err = p.communicate(timeout=5)
                break
            except subprocess.TimeoutExpired:
                pass
        took = time.monotonic() - sent
    finally:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
    assert p.returncode == 130, err
    assert err.strip().splitlines() == ["pfilter: interrupted by SIGINT"], err
    # promptly: the workers, busy with their task, are killed, not waited for (about 4 s each)
    assert took < 3, took


def test_a_scheduler_address_where_none_listens_fails_at_once(inputs, tmp_path):
    """A refused connection is said at once, naming the address (distributed alone retries it
    for its whole connect timeout, 30 s, then says only that it timed out); no output is made."""
    import socket
    with socket.socket() as s:          # a port of this host that nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    address = f"tcp://127.0.0.1:{port}"
    out = tmp_path / "out.pcap"
    r, seconds = _scheduler_cli(address, inputs, out)
    assert r.returncode == 1 and r.stderr.count("\n") == 1, r.stderr
    assert address in r.stderr and "refused" in r.stderr and "Traceback" not in r.stderr
    assert seconds < 15 and not out.exists() and os.listdir(tmp_path) == []


def test_a_scheduler_address_where_something_else_answers(inputs, tmp_path):
    """A server that is not a Dask scheduler (here one that answers as a web server does): one
    line saying so, not distributed's handshake failing on its bytes (a length of exbibytes:
    'out of memory' before this check)."""
    import socket
    import threading
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(4)

    def answer():
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            with conn:
                conn.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
                conn.settimeout(5)
                try:
                    conn.recv(4096)
                except OSError:
                    pass
    threading.Thread(target=answer, daemon=True).start()
    address = f"tcp://127.0.0.1:{server.getsockname()[1]}"
    out = tmp_path / "out.pcap"
    try:
        r, _ = _scheduler_cli(address, inputs, out)
    finally:
        server.close()
    assert r.returncode != 0 and r.stderr.count("\n") == 1, r.stderr
    assert address in r.stderr and "not a Dask scheduler" in r.stderr and not out.exists()


def test_a_scheduler_address_where_something_silent_answers(inputs, tmp_path):
    """A server that accepts and waits for its client to speak (a web server): distributed's
    handshake waited for it without end; one line once the connect timeout has passed."""
    import socket
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(4)
    address = f"tcp://127.0.0.1:{server.getsockname()[1]}"
    out = tmp_path / "out.pcap"
    try:
        started = time.monotonic()
        r = subprocess.run([sys.executable, "-m", "pfilter", "--quiet", "--scheduler", address, "-r", inputs[0],
                            "-w", str(out), "tcp"], capture_output=True, text=True, timeout=120,
                           env=dict(os.environ, DASK_DISTRIBUTED__COMM__TIMEOUTS__CONNECT="2s"))
        seconds = time.monotonic() - started
    finally:
        server.close()
    assert r.returncode == 1 and r.stderr.count("\n") == 1, r.stderr
    assert r.stderr == (f"pfilter: {address}: what answers there is not a Dask scheduler (it said nothing "
                        f"within 2 s)\n")
    assert seconds < 60 and not out.exists()


def test_a_closed_client_or_no_client_is_a_filter_error(client, inputs):
    from distributed import Client
    other = Client(client.scheduler.address)
    other.close()
    for bad, says in ((other, "this distributed.Client is closed"), (42, "not int")):
        for call in (lambda: pdask.count(inputs[:1], "tcp", client=bad),
                     lambda: pdask.filter_files(inputs[:1], "tcp", "never.pcap", client=bad),
                     lambda: pdask.classify(inputs[:1], {"t": "tcp"}, client=bad)):
            with pytest.raises(pfilter.FilterError, match=says):
                call()
    assert not os.path.exists("never.pcap")
    # an address stands for a client of it, as --scheduler takes one
    assert pdask.count(inputs[:1], "tcp", client=client.scheduler.address) == pdask.count(inputs[:1], "tcp",
                                                                                         client=client)


@pytest.mark.parametrize("address", ["tcp://127.0.0.1:99999", "127.0.0.1", "tcp://a:b:c", "http://127.0.0.1:8786"])
def test_a_malformed_scheduler_address(inputs, tmp_path, address):
    r, _ = _scheduler_cli(address, inputs, tmp_path / "out.pcap")
    assert r.returncode == 1 and r.stderr.count("\n") == 1 and "not a scheduler address" in r.stderr, r.stderr


@pytest.mark.parametrize("command, status", [(["--count", "tcp"], 1), (["classify", "-R", "RULES"], 2)])
def test_an_empty_scheduler_address(inputs, tmp_path, command, status):
    """--scheduler '' (an unset variable in a script): one line that says what it takes, before
    any cluster is sought; the command's status for a usage error (pfilter's is tcpdump's 1)."""
    rules = tmp_path / "rules.txt"
    rules.write_text("web: tcp port 80\n")
    command = [str(rules) if a == "RULES" else a for a in command]
    lead, rest = (command[:1], command[1:]) if command[0] == "classify" else ([], command)
    r = subprocess.run([sys.executable, "-m", "pfilter", *lead, "--scheduler", " ", "-r", inputs[0], *rest],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == status and r.stderr.count("\n") == 1, r.stderr
    assert "--scheduler needs a scheduler's address" in r.stderr and "Traceback" not in r.stderr


def test_without_dask_the_extra_is_named(tmp_path, inputs):
    code = ("import sys; sys.modules['distributed'] = None; import pfilter, pfilter.dask as d\n"
            "try:\n    d.count(sys.argv[1:], 'tcp')\nexcept pfilter.FilterError as e:\n"
            "    print(type(e).__name__, isinstance(e, ImportError), e)\n")
    r = subprocess.run([sys.executable, "-c", code, inputs[0]], capture_output=True, text=True, timeout=60)
    assert r.stdout.startswith("DaskUnavailableError True") and "pfilter-bpf[dask]" in r.stdout
    # the CLI: one line, no traceback
    r = subprocess.run([sys.executable, "-c", "import sys; sys.modules['distributed'] = None; from pfilter.cli import main; "
                        "sys.exit(main(sys.argv[1:]))", "--scheduler", "local", "-r", inputs[0], "--count", "tcp"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and r.stderr.count("\n") == 1 and "pfilter-bpf[dask]" in r.stderr


def test_ranges_that_do_not_join_are_redone(client, inputs):
    """A range start that is not a record boundary (a bad guess) is caught by the walk of the
    range before, and the file is filtered whole: the count stays exact."""
    from pfilter.capture.index import build_index, planned_ranges
    path = inputs[1]
    planned = planned_ranges(path, 300_000)
    ix = build_index(path)
    assert len(planned) > 3 and all(int(ix.offsets[np.searchsorted(ix.offsets, a)]) == a for a, _ in planned)
    want = tcpdump_count(path, "tcp")
    (a, b), (c, _d) = planned[0], planned[1]
    bad = [(0, path, (a, b)), (0, path, (b + 1, None))]       # one byte past a boundary
    results = pdask._gather_parts(client, bad, "tcp", [None, None], [None, None])
    assert sum(r["matched"] for r in results if r is not None) == want
    good = [(0, path, r) for r in planned]
    results = pdask._gather_parts(client, good, "tcp", [None] * len(good), [None] * len(good))
    assert all(r is not None for r in results) and sum(r["matched"] for r in results) == want


@pytest.mark.parametrize("one_host", [True, False], ids=["turns-in-a-mapped-file", "offsets-by-queue"])
def test_one_output_written_in_place_by_a_ring(client, inputs, tmp_path, monkeypatch, one_host):
    """Into one file, a ring of tasks (one per worker) writes the output in place, chunk by chunk
    in turn, passing the end offsets on (members on one host: their turns in a mapped file; else
    through distributed.Queue): byte-identical to the local call, every chunk done by the fast
    path, both workers taking part, no part file or ring file left behind."""
    monkeypatch.setattr(pdask, "RING_SHARED", one_host)
    taken = []
    real = pdask._write_ring
    monkeypatch.setattr(pdask, "_write_ring", lambda *a: taken.append(real(*a)) or taken[-1])
    submitted = []
    real_submit = client.submit
    monkeypatch.setattr(client, "submit", lambda f, *a, **k: submitted.append(k.get("workers")) or real_submit(f, *a, **k))
    local = tmp_path / "local.pcap"
    pfilter.filter_file(inputs[:3], str(local), "ip and tcp port 80")
    out = tmp_path / "dask.pcap"
    stats = pdask.filter_files(inputs[:3], "ip and tcp port 80", str(out), client=client, range_bytes=300_000)
    assert len(taken) == 1 and taken[0] is not None           # not the fallback through part files
    if one_host:                                              # per input: its chunks, all written
        assert len(taken[0]) == 3 and sum(r["chunks_done"] for r in taken[0]) > 6
    else:                                                     # per chunk of an input
        assert len(taken[0]) > 6
    assert sorted(w[0] for w in submitted) == sorted(client.scheduler_info()["workers"])
    assert out.read_bytes() == local.read_bytes()
    assert stats.written == stats.matched == pfilter.filter_file(inputs[:3], None, "ip and tcp port 80").matched
    assert sorted(os.listdir(tmp_path)) == ["dask.pcap", "local.pcap"]
    # the default chunks (each input one chunk here) and a ring of one member
    pdask.filter_files(inputs[:3], "ip and tcp port 80", str(out), client=client)
    assert taken[-1] is not None and out.read_bytes() == local.read_bytes()
    monkeypatch.setattr(pdask, "_members", lambda c, n: [sorted(c.scheduler_info()["workers"])[0]])
    pdask.filter_files(inputs[:3], "ip and tcp port 80", str(out), client=client, range_bytes=300_000)
    assert taken[-1] is not None and out.read_bytes() == local.read_bytes()


def test_filter_files_called_at_once_from_several_threads(client, inputs, tmp_path, monkeypatch):
    """Rings started at once on one cluster run one after another (a lock on the scheduler):
    each takes every worker thread, so two at once could each hold the thread the other's member
    waits for, and every call would wait RING_WAIT_SECONDS, then redo its output from parts.
    The wait is 30 s, not the 60 s default (a deadlock still shows, as a fallback), nor a few
    seconds: on a loaded machine (CI: three test processes and the cluster's two on two cores) a
    member's task started more than 5 s after its partner's once, and that ring fell back."""
    import threading
    monkeypatch.setattr(pdask, "RING_WAIT_SECONDS", 30.0)
    taken = []
    real = pdask._write_ring
    monkeypatch.setattr(pdask, "_write_ring", lambda *a: taken.append(real(*a)) or taken[-1])
    exprs = ["tcp", "udp", "ip and tcp port 80", "icmp"]
    errors = []

    def call(k):
        try:
            pdask.filter_files(inputs[:3], exprs[k], str(tmp_path / f"d{k}.pcap"), client=client, range_bytes=300_000)
        except BaseException as e:      # (reported below, in the test's thread)
            errors.append(e)
    threads = [threading.Thread(target=call, args=(k,)) for k in range(len(exprs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len(taken) == len(exprs) and all(r is not None for r in taken)     # no fallback
    import gc
    from distributed.semaphore import Semaphore
    gc.collect()                        # no lock left behind on the client's loop
    assert not [o for o in gc.get_objects() if isinstance(o, Semaphore)]
    for k, e in enumerate(exprs):
        pfilter.filter_file(inputs[:3], str(tmp_path / f"l{k}.pcap"), e)
        assert (tmp_path / f"d{k}.pcap").read_bytes() == (tmp_path / f"l{k}.pcap").read_bytes(), e


@pytest.mark.parametrize("one_host", [True, False], ids=["turns-in-a-mapped-file", "offsets-by-queue"])
def test_a_ring_member_that_does_not_run_in_time(client, inputs, tmp_path, monkeypatch, one_host):
    """A member waiting for an offset (a turn) that does not come (the member before it not
    running, as on a busy cluster) gives up after RING_WAIT_SECONDS; the output is then made
    through part files: the same bytes, nothing left behind."""
    monkeypatch.setattr(pdask, "RING_SHARED", one_host)
    taken = []
    real = pdask._write_ring
    monkeypatch.setattr(pdask, "_write_ring", lambda *a: taken.append(real(*a)) or taken[-1])
    monkeypatch.setattr(pdask, "RING_WAIT_SECONDS", 0.5)
    one = sorted(client.scheduler_info()["workers"])[0]
    monkeypatch.setattr(pdask, "_members", lambda c, n: [one, "tcp://127.0.0.1:9"])    # never runs
    local = tmp_path / "local.pcap"
    pfilter.filter_file(inputs[:3], str(local), "tcp")
    out = tmp_path / "dask.pcap"
    real_submit = client.submit

    def submit(f, *a, **k):              # the member for no worker: a task nobody starts
        if k.get("workers") == ["tcp://127.0.0.1:9"]:
            return real_submit(lambda: {}, pure=False)
        return real_submit(f, *a, **k)
    monkeypatch.setattr(client, "submit", submit)
    pdask.filter_files(inputs[:3], "tcp", str(out), client=client, range_bytes=300_000)
    assert taken == [None] and out.read_bytes() == local.read_bytes()
    assert sorted(os.listdir(tmp_path)) == ["dask.pcap", "local.pcap"]


def test_a_ring_member_whose_worker_dies_is_not_waited_for(inputs, tmp_path):
    """A ring member's worker killed while the member runs (its nanny starts a new worker, at
    another address): the member's task may run on the old address only, so it would never end;
    the client gives up on the ring (its tasks cancelled) instead of waiting for ever, and the
    next call, on the new worker, writes the same bytes as a local run."""
    import signal
    import threading
    import time
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0")
    c = distributed.Client(cluster)
    try:
        a, b = sorted(c.scheduler_info()["workers"])
        futures = [c.submit(time.sleep, 120, workers=[a], allow_other_workers=False, pure=False),
                   c.submit(time.sleep, 0.1, workers=[b], allow_other_workers=False, pure=False)]
        distributed.wait(futures[1])
        os.kill(c.run(os.getpid, workers=[a])[a], signal.SIGKILL)
        got = []
        waiting = threading.Thread(target=lambda: got.append(pdask._ring_parts(c, futures, [a, b])), daemon=True)
        started = time.monotonic()
        waiting.start()
        waiting.join(60)
        assert got == [None] and time.monotonic() - started < 60
        assert futures[0].cancelled()
        c.wait_for_workers(2, timeout=60)
        local, out = tmp_path / "local.pcap", tmp_path / "dask.pcap"
        pfilter.filter_file(inputs[:3], str(local), "tcp")
        pdask.filter_files(inputs[:3], "tcp", str(out), client=c)
        assert out.read_bytes() == local.read_bytes()
        assert sorted(os.listdir(tmp_path)) == ["dask.pcap", "local.pcap"]
    finally:
        c.close()
        cluster.close()


def test_the_members_of_a_ring_given_up_stop_at_once(client, inputs, tmp_path, monkeypatch):
    """A ring on this host whose second member's worker is not in the cluster (left, as a killed
    worker leaves): the client gives up on the ring at once, and the member that runs, waiting
    for the missing member's turns, stops then too (ring_cancel), not RING_WAIT_SECONDS (here 120)
    later: its worker is free again for the parts and for the next call; the same bytes."""
    import time
    monkeypatch.setattr(pdask, "RING_SHARED", True)
    monkeypatch.setattr(pdask, "RING_WAIT_SECONDS", 120.0)
    one = sorted(client.scheduler_info()["workers"])[0]
    monkeypatch.setattr(pdask, "_members", lambda c, n: [one, "tcp://127.0.0.1:9"])    # not in the cluster
    real_submit = client.submit

    def submit(f, *a, **k):              # the member for no worker: a task that never ends
        if k.get("workers") == ["tcp://127.0.0.1:9"]:
            return real_submit(time.sleep, 3600, workers=["tcp://127.0.0.1:9"], allow_other_workers=False,
                               pure=False)
        return real_submit(f, *a, **k)
    monkeypatch.setattr(client, "submit", submit)
    local, out = tmp_path / "local.pcap", tmp_path / "dask.pcap"
    pfilter.filter_file(inputs[:3], str(local), "tcp")
    started = time.monotonic()
    pdask.filter_files(inputs[:3], "tcp", str(out), client=client, range_bytes=300_000)
    assert out.read_bytes() == local.read_bytes() and time.monotonic() - started < 60
    deadline = time.monotonic() + 10
    while any(client.processing().values()) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(client.processing().values()), client.processing()
    assert sorted(os.listdir(tmp_path)) == ["dask.pcap", "local.pcap"]


def test_a_busy_cluster_takes_no_ring(client, inputs, tmp_path, monkeypatch):
    """A worker already running a task (another client's) would hold its ring member back, and
    the other members would wait for it: the output is made from parts at once, the same bytes."""
    import time
    taken = []
    real = pdask._write_ring
    monkeypatch.setattr(pdask, "_write_ring", lambda *a: taken.append(real(*a)) or taken[-1])
    busy = client.submit(time.sleep, 4, workers=[sorted(client.scheduler_info()["workers"])[0]], pure=False)
    while busy.status == "pending" and not any(client.processing().values()):
        time.sleep(0.01)
    local = tmp_path / "local.pcap"
    pfilter.filter_file(inputs[:3], str(local), "tcp")
    out = tmp_path / "dask.pcap"
    pdask.filter_files(inputs[:3], "tcp", str(out), client=client, range_bytes=300_000)
    assert taken == [None] and out.read_bytes() == local.read_bytes()
    busy.result()
    pdask.filter_files(inputs[:3], "tcp", str(out), client=client, range_bytes=300_000)
    assert taken[-1] is not None and out.read_bytes() == local.read_bytes()      # idle again: the ring


@pytest.mark.parametrize("one_host", [True, False], ids=["turns-in-a-mapped-file", "offsets-by-queue"])
def test_one_output_starts_over_on_what_the_fast_path_leaves(client, inputs, tmp_path, monkeypatch, one_host):
    """Records above the snapshot length (the general path's business) inside the ranges: the
    in-place output is dropped, the file done again through part files; the same bytes as the
    local call. With one such record in member 1's first chunk, member 0 learns it at once (a
    size of -1, or the turns' end), not after RING_WAIT_SECONDS."""
    monkeypatch.setattr(pdask, "RING_SHARED", one_host)
    data = bytearray(open(inputs[1], "rb").read())
    data[16:20] = (100).to_bytes(4, "little")                  # snaplen 100: longer records follow
    src = tmp_path / "snap100.pcap"
    src.write_bytes(bytes(data))
    taken = []
    real = pdask._write_ring
    monkeypatch.setattr(pdask, "_write_ring", lambda *a: taken.append(real(*a)) or taken[-1])
    monkeypatch.setattr(pdask, "RING_WAIT_SECONDS", 30.0)
    local = tmp_path / "local.pcap"
    pfilter.filter_file(str(src), str(local), "tcp")
    out = tmp_path / "dask.pcap"
    started = time.perf_counter()
    pdask.filter_files([str(src)], "tcp", str(out), client=client, range_bytes=300_000)
    assert taken == [None]
    assert out.read_bytes() == local.read_bytes()
    assert sorted(os.listdir(tmp_path)) == ["dask.pcap", "local.pcap", "snap100.pcap"]
    # one record 20 bytes above the snapshot length, in the third range (member 1's first chunk)
    data = open(inputs[1], "rb").read()
    records, at = [], 24
    while at < len(data):
        caplen = int.from_bytes(data[at + 8:at + 12], "little")
        records.append(bytearray(data[at:at + 16 + caplen]))
        at += 16 + caplen
    snaplen = max(int.from_bytes(r[8:12], "little") for r in records)
    k = next(i for i, _ in enumerate(records) if sum(map(len, records[:i])) > 2 * 300_000 + 1000)
    grown = records[k] + bytes(snaplen + 20 - (len(records[k]) - 16))
    grown[8:12] = grown[12:16] = (snaplen + 20).to_bytes(4, "little")
    records[k] = grown
    one = tmp_path / "one.pcap"
    one.write_bytes(data[:16] + snaplen.to_bytes(4, "little") + data[20:24] + b"".join(records))
    pfilter.filter_file(str(one), str(local), "tcp")
    started = time.perf_counter()
    pdask.filter_files([str(one)], "tcp", str(out), client=client, range_bytes=300_000)
    assert time.perf_counter() - started < 15 and taken[-1] is None
    assert out.read_bytes() == local.read_bytes()


@pytest.fixture(scope="module")
def damaged(inputs, tmp_path_factory):
    """Three damaged inputs: a record length past the snapshot length half way through (a file
    cut into several ranges), a file cut inside its last record, and a file that is no capture."""
    import struct
    d = tmp_path_factory.mktemp("damaged")
    data = bytearray(open(inputs[2], "rb").read())
    off, n = 24, 0
    while n < 1700:
        off += 16 + struct.unpack_from("<I", data, off + 8)[0]
        n += 1
    struct.pack_into("<I", data, off + 8, 0x7FFFFFFF)
    (d / "bad.pcap").write_bytes(data)
    (d / "cut.pcap").write_bytes(open(inputs[1], "rb").read()[:-100])
    (d / "notes.pcap").write_text("not a capture\n")
    return [str(d / "bad.pcap"), str(d / "cut.pcap"), str(d / "notes.pcap")]


def _local(sources, out, expr, on_damage):
    """pfilter.filter_file's stats and error (None when it raised none)."""
    try:
        return pfilter.filter_file(sources, out, expr, on_damage=on_damage), None
    except pfilter.CaptureFormatError as err:
        return err.stats, err


@pytest.mark.parametrize("which", [0, 1, 2])
def test_a_damaged_input_is_kept_up_to_its_damage_as_locally(client, inputs, damaged, tmp_path, which):
    """A damaged input among several: its packets before the damage counted and written, and
    then (without on_damage) the run ends with its error, naming it as the caller did, or (with
    on_damage) each error passed on in input order and the inputs after it read: the counts,
    outputs and errors of pfilter.filter_file."""
    sources = [inputs[0], damaged[which], inputs[3], damaged[(which + 1) % 3]]
    expr = "tcp or udp port 53"
    for keep_going in (False, True):
        mine, theirs = [], []
        local_out, dask_out = tmp_path / f"local{keep_going}.pcap", tmp_path / f"dask{keep_going}.pcap"
        want_count, want_err = _local(sources, None, expr, theirs.append if keep_going else None)
        want_out, _ = _local(sources, str(local_out), expr, None if not keep_going else (lambda e: None))
        try:
            got_count, got_err = pdask.count_stats(sources, expr, client=client, range_bytes=300_000,
                                                   on_damage=mine.append if keep_going else None), None
        except pfilter.CaptureFormatError as err:
            got_count, got_err = err.stats, err
        assert (got_count.read, got_count.matched) == (want_count.read, want_count.matched)
        assert str(got_err) == str(want_err) and [str(e) for e in mine] == [str(e) for e in theirs]
        assert bool(theirs) == keep_going and (want_err is None) == keep_going
        for range_bytes in (None, 300_000):       # the ring's chunks, or ranges into part files
            try:
                stats, err = pdask.filter_files(sources, expr, str(dask_out), client=client, range_bytes=range_bytes,
                                                on_damage=None if not keep_going else (lambda e: None)), None
            except pfilter.CaptureFormatError as e:
                stats, err = e.stats, e
            assert dask_out.read_bytes() == local_out.read_bytes()
            assert (stats.read, stats.written) == (want_out.read, want_out.written)
            assert (err is None) == keep_going


def test_a_damaged_input_into_a_directory(client, inputs, damaged, tmp_path):
    """One output per input: the damaged input's holds its packets before the damage; without
    on_damage the inputs after it get none."""
    sources = [inputs[0], damaged[0], inputs[1]]
    with pytest.raises(pfilter.CaptureFormatError) as caught:
        pdask.filter_files(sources, "tcp", str(tmp_path / "out") + os.sep, client=client)
    assert caught.value.path == damaged[0] and sorted(os.listdir(tmp_path / "out")) == ["bad.pcap", "in0.pcap"]
    want = tmp_path / "want.pcap"
    _local([damaged[0]], str(want), "tcp", None)
    assert (tmp_path / "out" / "bad.pcap").read_bytes() == want.read_bytes()
    errors = []
    pdask.filter_files(sources, "tcp", str(tmp_path / "all") + os.sep, client=client, on_damage=errors.append)
    assert [e.path for e in errors] == [damaged[0]] and len(os.listdir(tmp_path / "all")) == 3


def test_cli_scheduler_with_damaged_inputs_as_without(client, inputs, damaged, tmp_path):
    """`pfilter --scheduler` with damaged inputs: the same output, lines, summary and status 1
    as without it (the inputs announced all at once first, as a parallel local count does)."""
    runs = {}
    for how, extra in (("local", []), ("cluster", ["--scheduler", client.scheduler.address])):
        for tail in (["-w", str(tmp_path / f"{how}.pcap")], ["--count"]):
            r = subprocess.run([sys.executable, "-m", "pfilter", "-r", inputs[0], "-r", damaged[1], "-r", inputs[2],
                                "-r", damaged[0], *extra, *tail, "tcp"], capture_output=True, text=True, timeout=120)
            lines = r.stderr.splitlines()
            lines = [re.sub(r" in [0-9.]+ s$", "", x) for x in lines]       # (the summary's seconds)
            runs[how, tail[0]] = (r.returncode, r.stdout, [x for x in lines if not x.startswith("reading from")],
                                  sorted(x for x in lines if x.startswith("reading from")))
        one = subprocess.run([sys.executable, "-m", "pfilter", "-r", damaged[0], *extra, "-w",
                              str(tmp_path / f"{how}1.pcap"), "tcp"], capture_output=True, text=True, timeout=120)
        runs[how, "one"] = one.returncode, re.sub(r" in [0-9.]+ s\n", "\n", one.stderr)
    for tail in ("-w", "--count", "one"):
        local, cluster = runs["local", tail], runs["cluster", tail]
        assert local[0] == 1 and cluster[:-1] == local[:-1] if tail != "one" else cluster == local, (tail, cluster, local)
    assert (tmp_path / "cluster.pcap").read_bytes() == (tmp_path / "local.pcap").read_bytes()
    assert (tmp_path / "cluster1.pcap").read_bytes() == (tmp_path / "local1.pcap").read_bytes()
    assert runs["cluster", "one"][1].count("\n") == 3      # announced, the damage, the summary


@pytest.mark.parametrize("which", [0, 2])
def test_classify_with_a_damaged_input_as_locally(client, inputs, damaged, tmp_path, which):
    """pfilter.dask.classify: a damaged input's error, naming it as given, whose partial result
    is the local one (the inputs before it and its packets before the damage); and `pfilter
    classify --scheduler` prints that table and that line, as without it."""
    sources = [inputs[0], inputs[3], damaged[which], inputs[1]]
    with pytest.raises(pfilter.CaptureFormatError) as theirs:
        pfilter.classify(sources, RULES)
    with pytest.raises(pfilter.CaptureFormatError) as mine:
        pdask.classify(sources, RULES, client=client)
    assert str(mine.value) == str(theirs.value)
    got, want = mine.value.partial, theirs.value.partial
    assert got.packets == want.packets > 0 and (got.counts == want.counts).all()
    assert np.array_equal(got.matrix, want.matrix) and list(got.labels()) == list(want.labels())
    rules = tmp_path / "rules.txt"
    rules.write_text("".join(f"{k}: {v}\n" for k, v in RULES.items()))
    runs = []
    for extra in ([], ["--scheduler", client.scheduler.address]):
        r = subprocess.run([sys.executable, "-m", "pfilter", "classify", *[a for s in sources for a in ("-r", s)],
                            "-R", str(rules), *extra], capture_output=True, text=True, timeout=120)
        runs.append((r.returncode, r.stdout, r.stderr))
    assert runs[1] == runs[0] and runs[0][0] == 1 and runs[0][2].count("\n") == 1, runs


def test_progress_is_reported_as_the_tasks_end(client, inputs, tmp_path, monkeypatch):
    """count_stats and filter_files call progress(bytes_done, bytes_total, None) as their tasks
    end, up to the inputs' whole size (a ring writing one output from pcap files: as its walks
    go on, read from its turns' file); the CLI's --progress draws the bar with --scheduler too."""
    pcaps = inputs[:3]
    monkeypatch.setattr(pdask, "RING_PROGRESS_SECONDS", 0.001)
    taken = []
    real = pdask._write_ring
    monkeypatch.setattr(pdask, "_write_ring", lambda *a: taken.append(real(*a)) or taken[-1])

    def queue_ring(call, *args, **kwargs):         # members on several hosts: offsets by Queue
        with monkeypatch.context() as m:
            m.setattr(pdask, "RING_SHARED", False)
            return call(*args, **kwargs)
    for sources, call in ((inputs, lambda progress: pdask.count_stats(inputs, "tcp", client=client, range_bytes=300_000,
                                                                      progress=progress)),
                          (inputs, lambda progress: pdask.filter_files(inputs, "tcp", str(tmp_path / "d") + os.sep,
                                                                       client=client, range_bytes=300_000,
                                                                       progress=progress)),
                          (inputs, lambda progress: pdask.filter_files(inputs, "tcp", str(tmp_path / "parts.pcap"),
                                                                       client=client, progress=progress)),
                          (pcaps, lambda progress: pdask.filter_files(pcaps, "tcp", str(tmp_path / "ring.pcap"),
                                                                      client=client, progress=progress)),
                          (pcaps, lambda progress: queue_ring(pdask.filter_files, pcaps, "tcp",
                                                              str(tmp_path / "queue.pcap"), client=client,
                                                              range_bytes=300_000, progress=progress))):
        total = sum(os.path.getsize(p) for p in sources)
        seen = []
        call(lambda done, whole, info: seen.append((done, whole)))
        assert seen and seen[-1] == (total, total), seen
        assert all(a[0] <= b[0] and a[1] == total for a, b in zip(seen, seen[1:]))
        # not only at the end; but the ring on one host (the second call of _write_ring) may end
        # before its first look at the turns (test_a_ring_s_walks_are_watched looks for it)
        if len(taken) != 2:
            assert any(0 < done < total for done, _whole in seen), seen
    assert len(taken) == 3 and taken[0] is None and None not in taken[1:]      # (a pcapng input: parts)
    seen = []
    pdask.classify(inputs, RULES, client=client, progress=lambda done, whole, info: seen.append(done))
    assert sorted(seen) == seen and len(seen) == len(inputs) and seen[-1] == sum(os.path.getsize(p) for p in inputs)
    (tmp_path / "rules.txt").write_text("web: tcp port 80\n")
    r = subprocess.run([sys.executable, "-m", "pfilter", "classify", "--progress", "--scheduler",
                        client.scheduler.address, "-r", inputs[0], "-R", str(tmp_path / "rules.txt")],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "pfilter" in r.stderr and "web" in r.stdout, r.stderr
    r = subprocess.run([sys.executable, "-m", "pfilter", "--quiet", "--progress", "--scheduler", client.scheduler.address,
                        *[a for p in inputs for a in ("-r", p)], "--count", "tcp"], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0 and "pfilter" in r.stderr and "Traceback" not in r.stderr, r.stderr


def test_what_the_local_api_takes_the_cluster_takes_alike(client, inputs, tmp_path, monkeypatch):
    """An expression that rejects every packet is filtered (an empty output, a count of 0), as
    pfilter.filter_file does (the command refuses it, with or without --scheduler, as tcpdump);
    no input to classify is an empty Classification; the stats' files are named as given; a lone
    input that is no capture raises with the stats of nothing read, as locally."""
    never = "tcp and udp"
    local, out = tmp_path / "local.pcap", tmp_path / "dask.pcap"
    want = pfilter.filter_file(inputs[:2], str(local), never)
    got = pdask.filter_files(inputs[:2], never, str(out), client=client)
    assert (got.read, got.matched) == (want.read, 0) and out.read_bytes() == local.read_bytes()
    assert pdask.count_stats(inputs[:2], never, client=client).matched == 0
    assert pdask.classify([], RULES, client=client).packets == pfilter.classify([], RULES).packets == 0
    monkeypatch.chdir(os.path.dirname(inputs[0]))
    names = [os.path.basename(p) for p in inputs[:2]]
    assert pdask.count_stats(names, "tcp", client=client).files == pfilter.filter_file(names, None, "tcp").files
    assert pdask.filter_files(names, "tcp", str(out), client=client).files == names
    text = tmp_path / "notes.pcap"
    text.write_text("not a capture\n")
    with pytest.raises(pfilter.CaptureFormatError) as caught:
        pdask.filter_files([str(text)], "tcp", str(out), client=client)
    assert (caught.value.stats.read, caught.value.stats.written) == (0, 0)
    long = " or ".join(f"(host 10.9.{i // 200}.{i % 200} and port {i + 1})" for i in range(320)) + " or tcp"
    assert len(pfilter.compile(long)) > 4096            # (more than the kernel takes: offline, tcpdump runs it)
    for command in ([], ["--scheduler", client.scheduler.address]):
        r = subprocess.run([sys.executable, "-m", "pfilter", "-r", inputs[0], "-w", str(out), *command, never],
                           capture_output=True, text=True)
        assert r.returncode == 1 and r.stderr.splitlines()[-1] == "pfilter: expression rejects all packets"
        r = subprocess.run([sys.executable, "-m", "pfilter", "-r", inputs[0], "--count", *command, long],
                           capture_output=True, text=True)
        assert r.returncode == 0 and r.stdout == f"{tcpdump_count(inputs[0], 'tcp')} packets\n", r.stderr


def test_classify_warns_of_a_rule_without_meaning_on_an_input_as_locally(client, inputs, tmp_path):
    """`ether host ...` over an Ethernet and a NULL (loopback) capture: pfilter.dask.classify
    warns (RuleLinkTypeWarning) as pfilter.classify does, once, and lists it in `inapplicable`."""
    import warnings
    with pfilter.open(inputs[0]) as cap:
        batch = next(iter(cap))
    ip = [batch.packet(i)[14:] for i in range(len(batch)) if batch.packet(i)[12:14] == b"\x08\x00"][:50]
    null = tmp_path / "null.pcap"
    pfilter.write(str(null), pfilter.PacketBatch.from_packets([b"\x02\x00\x00\x00" + p for p in ip], linktype=0))
    rules = {"mac": "ether host 00:11:22:33:44:55", "tcp": "tcp"}
    said = {}
    for name, run in (("local", lambda: pfilter.classify([inputs[0], str(null)], rules)),
                      ("dask", lambda: pdask.classify([inputs[0], str(null)], rules, client=client))):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            result = run()
        said[name] = ([str(w.message) for w in caught if issubclass(w.category, pfilter.RuleLinkTypeWarning)],
                      result.inapplicable, [int(c) for c in result.counts])
    assert said["dask"] == said["local"] and len(said["local"][0]) == 1


def test_a_scheduler_without_workers_is_an_error_not_a_wait(inputs, monkeypatch):
    """A scheduler with no worker would keep the tasks waiting for ever: the calls wait
    NO_WORKERS_SECONDS for one, then raise FilterError saying so."""
    monkeypatch.setattr(pdask, "NO_WORKERS_SECONDS", 2.0)
    cluster = distributed.LocalCluster(n_workers=0, dashboard_address=":0")
    c = distributed.Client(cluster)
    try:
        for call in (lambda: pdask.count(inputs[:1], "tcp", client=c),
                     lambda: pdask.classify(inputs[:1], RULES, client=c)):
            started = time.monotonic()
            with pytest.raises(pfilter.FilterError, match=r"the Dask scheduler has no worker \(none came within 2 s\)"):
                call()
            assert time.monotonic() - started < 30
    finally:
        c.close()
        cluster.close()


def test_a_run_whose_workers_are_all_lost_is_given_up(inputs, tmp_path, monkeypatch):
    """The only worker killed while its task runs (here: a task blocked reading a FIFO nobody
    writes): the tasks would wait for a worker for ever; the call raises FilterError once the
    scheduler has had no worker for NO_WORKERS_SECONDS."""
    import signal
    import threading
    monkeypatch.setattr(pdask, "NO_WORKERS_SECONDS", 2.0)
    cluster = distributed.LocalCluster(n_workers=0, dashboard_address=":0")
    c = distributed.Client(cluster)
    worker = subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_worker", cluster.scheduler_address,
                               "--no-nanny", "--nthreads", "1", "--no-dashboard"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        c.wait_for_workers(1, timeout=60)
        fifo = tmp_path / "nobody-writes.pcap"
        os.mkfifo(fifo)
        raised = []

        def run():
            try:
                pdask.count([str(fifo)], "tcp", client=c)
            except BaseException as e:          # (handed to the test's thread)
                raised.append(e)
        waiting = threading.Thread(target=run, daemon=True)
        waiting.start()
        deadline = time.monotonic() + 60
        while not any(c.processing().values()) and time.monotonic() < deadline:
            time.sleep(0.1)
        os.kill(worker.pid, signal.SIGKILL)
        started = time.monotonic()
        waiting.join(60)
        assert not waiting.is_alive() and time.monotonic() - started < 60
        assert len(raised) == 1 and isinstance(raised[0], pfilter.FilterError), raised
        assert "the Dask scheduler has had no worker for 2 s (all of them lost): the run is given up" in str(raised[0])
    finally:
        worker.kill()
        worker.wait()
        c.close()
        cluster.close()
