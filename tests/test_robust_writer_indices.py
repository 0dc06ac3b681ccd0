"""Issue 18, item 4: the capture writers take no index, layout or changed batch as a licence to
read outside the batch. Each case runs on the Cython record assemblers and on the pure-Python
fallback (the `assembler` fixture); what is written is read back with libpcap."""
import numpy as np
import pytest

import pfilter
import reference as ref
from pfilter import FilterError, PacketBatch
from pfilter.capture import writer as writer_mod
from pfilter.capture.writer import open_writer


@pytest.fixture(params=["native", "python"])
def assembler(request, monkeypatch):
    if request.param == "native":
        if writer_mod._native is None:
            pytest.skip("pfilter.capture._writer is not built")
    else:
        monkeypatch.setattr(writer_mod, "_native", None)
    return request.param


def batch_of(n=4):
    return PacketBatch.from_packets([bytes([i]) * (40 + i) for i in range(n)],
                                    timestamps=np.arange(n, dtype=np.int64) * 1_000_000_000)


@pytest.mark.parametrize("fmt", ["pcap", "pcapng"])
@pytest.mark.parametrize("which", [np.array([-1]), np.array([4]), np.array([0, 2**40]), [1.0], np.array([[0]]),
                                   ["0"], np.array([True, False]), np.zeros(5, bool)])
def test_writer_refuses_indices_outside_the_batch_or_not_integers(tmp_path, assembler, fmt, which):
    with open_writer(str(tmp_path / f"out.{fmt}"), format=fmt) as w:
        with pytest.raises(FilterError):
            w.write(batch_of(), which)
        assert w.packets_written == 0


@pytest.mark.parametrize("layout", [(1 << 30, False), (-16, False), (8, False), (16, "no"), 16, (16,), (True, False)])
def test_pcap_writer_refuses_a_raw_layout_no_pcap_file_has(tmp_path, assembler, layout):
    with open_writer(str(tmp_path / "out.pcap")) as w:
        with pytest.raises(FilterError, match="raw_layout"):
            w.write(batch_of(), raw_layout=layout)


def test_raw_layout_needs_room_for_the_record_header_in_front(tmp_path, assembler):
    # a batch built from packets has no record headers in front of its data: packet 0 sits at 0
    with open_writer(str(tmp_path / "out.pcap")) as w:
        with pytest.raises(FilterError, match="packet 0"):
            w.write(batch_of(), raw_layout=(16, False))


@pytest.mark.parametrize("fmt", ["pcap", "pcapng"])
@pytest.mark.parametrize("change", ["offset", "caplen", "negative", "timestamps"])
def test_writer_refuses_a_batch_changed_after_building(tmp_path, assembler, fmt, change):
    batch = batch_of()
    if change == "offset":
        batch.offsets[2] = 10**9
    elif change == "caplen":
        batch.caplen[1] = 0xFFFFFFF0
    elif change == "negative":
        batch.offsets[3] = -4
    else:
        batch.timestamps = batch.timestamps[:2]
    with open_writer(str(tmp_path / f"out.{fmt}"), format=fmt) as w:
        with pytest.raises(FilterError):
            w.write(batch, np.array([0, 1, 2, 3]))


@pytest.mark.parametrize("fmt", ["pcap", "pcapng"])
def test_valid_indices_mask_and_empty_selection_write_those_packets(tmp_path, assembler, fmt):
    batch = batch_of(5)
    path = tmp_path / f"out.{fmt}"
    with open_writer(str(path), format=fmt) as w:
        assert w.write(batch, np.array([4, 1], np.uint16)) == 2
        assert w.write(batch, np.array([False, False, True, False, False])) == 1
        assert w.write(batch, []) == 0
    _, _, records, error = ref.read_capture(str(path))
    assert error is None
    assert [data for data, _, _ in records] == [batch.packet(4), batch.packet(1), batch.packet(2)]
