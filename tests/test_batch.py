"""PacketBatch: flat arrays in, the same packets out."""
import numpy as np
import pytest

import pfilter


def test_from_packets_keeps_bytes_lengths_and_wire_lengths():
    b = pfilter.PacketBatch.from_packets([b"abc", b"", b"defgh"], wirelens=[60, 0, 1500])
    assert len(b) == 3
    assert [b.packet(i) for i in range(3)] == [b"abc", b"", b"defgh"]
    assert b.caplen.tolist() == [3, 0, 5] and b.wirelen.tolist() == [60, 0, 1500]
    assert b.offsets.dtype == np.int64 and b.timestamps.dtype == np.int64


def test_select_compacts_the_chosen_packets():
    b = pfilter.PacketBatch.from_packets([b"a", b"bb", b"ccc", b"dddd"], timestamps=[1, 2, 3, 4])
    s = b.select(np.array([False, True, False, True]))
    assert [s.packet(i) for i in range(len(s))] == [b"bb", b"dddd"]
    assert s.timestamps.tolist() == [2, 4] and s.offsets.tolist() == [0, 2]


def test_inconsistent_arrays_are_refused():
    with pytest.raises(pfilter.FilterError):
        pfilter.PacketBatch(np.zeros(4, np.uint8), [0], [5], [5])
    with pytest.raises(pfilter.FilterError):
        pfilter.PacketBatch.from_packets([b"a"], wirelens=[1, 2])


def test_match_batch_is_a_bool_array_of_accepted_packets():
    prog = pfilter.Program.from_tuples([(0x30, 0, 0, 0), (0x15, 0, 1, 7), (6, 0, 0, 1), (6, 0, 0, 0)])
    b = pfilter.PacketBatch.from_packets([b"\x07", b"\x08", b""])
    assert prog.match_batch(b).tolist() == [True, False, False]
    assert prog.run_batch(b).dtype == np.uint32
