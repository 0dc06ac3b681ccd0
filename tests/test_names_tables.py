"""Name tables: each lookup gives what libpcap 1.10.3's own function gives for the same name
(pcap_nametoport, pcap_nametoportrange, pcap_nametoproto, pcap_nametoeproto, pcap_nametollc,
pcap_nametonetaddr, pcap_ether_aton, called through ctypes), plus the built-in tables."""
import ctypes
import socket

import pytest

import reference
from pfilter.compiler import names
from pfilter.errors import FilterError

PROTO_UNDEF = -1
PROTO_NAMES = {6: "tcp", 17: "udp", PROTO_UNDEF: None}


@pytest.fixture(scope="module")
def lib():
    shared = reference.libpcap()
    own = ctypes.CDLL(shared._name)
    own.pcap_nametoport.argtypes = [ctypes.c_char_p, ctypes.POINTER(ctypes.c_int),
                                    ctypes.POINTER(ctypes.c_int)]
    own.pcap_nametoportrange.argtypes = [ctypes.c_char_p, ctypes.POINTER(ctypes.c_int),
                                         ctypes.POINTER(ctypes.c_int), ctypes.POINTER(ctypes.c_int)]
    own.pcap_nametoproto.argtypes = [ctypes.c_char_p]
    own.pcap_nametoeproto.argtypes = [ctypes.c_char_p]
    own.pcap_nametollc.argtypes = [ctypes.c_char_p]
    own.pcap_nametonetaddr.argtypes = [ctypes.c_char_p]
    own.pcap_nametonetaddr.restype = ctypes.c_uint32
    own.pcap_ether_aton.argtypes = [ctypes.c_char_p]
    own.pcap_ether_aton.restype = ctypes.POINTER(ctypes.c_ubyte)
    return own


def _names_in(path):
    """Every name and alias in a services/protocols-style file (none when it is missing)."""
    out = []
    try:
        with open(path) as f:
            for line in f:
                fields = line.split("#", 1)[0].split()
                if len(fields) >= 2:
                    out.append(fields[0])
                    out.extend(fields[2:])
    except OSError:
        pass
    return out


def _service_names():
    return sorted(set(_names_in("/etc/services")))


SERVICES = _service_names()


def test_system_services_database_is_there():
    assert len(SERVICES) > 100


def test_every_service_resolves_as_pcap_nametoport_does(lib):
    port, proto = ctypes.c_int(), ctypes.c_int()
    names.port_number.cache_clear()
    for name in SERVICES + ["80", "0", "65535", "nosuchservice", "ftp-data", "domain"]:
        found = lib.pcap_nametoport(name.encode(), ctypes.byref(port), ctypes.byref(proto))
        ours = names.port_number(name)
        if not found:
            assert ours is None, name
            assert names.service_ports(name) == {}
        else:
            assert ours == (port.value, PROTO_NAMES[proto.value]), name


def test_service_ports_lists_the_protocols_a_name_may_be_used_with():
    http = names.port_number("http")
    if http is None:
        pytest.skip("no http service in this system's database")
    port, proto = http
    expected = {"tcp", "udp", "sctp"} if proto is None else {proto}
    assert names.service_ports("http") == {p: port for p in expected}
    assert names.service_ports("domain") == {"tcp": 53, "udp": 53, "sctp": 53}


@pytest.mark.parametrize("text", ["ssh-http", "1-100", "100-1", "10-20abc", "ftp-data-http",
                                  "http-ftp-data", "domain-ntp", "ssh-", "-22", "nosuch-http",
                                  "http", "0-65535", "80-http"])
def test_port_ranges_resolve_as_pcap_nametoportrange_does(lib, text):
    p1, p2, proto = ctypes.c_int(), ctypes.c_int(), ctypes.c_int()
    found = lib.pcap_nametoportrange(text.encode(), ctypes.byref(p1), ctypes.byref(p2),
                                     ctypes.byref(proto))
    ours = names.port_range(text)
    if not found:
        assert ours is None
    else:
        assert ours == (p1.value, p2.value, PROTO_NAMES[proto.value])


def _protocol_names():
    return _names_in("/etc/protocols")


def test_every_protocol_resolves_as_pcap_nametoproto_does(lib):
    for name in _protocol_names() + ["tcp", "udp", "bogus", "TCP"]:
        theirs = lib.pcap_nametoproto(name.encode())
        assert names.protocol_number(name) == (None if theirs == PROTO_UNDEF else theirs), name


@pytest.mark.parametrize("name", sorted(names.ETHERTYPES) + sorted(names.LLC_SAPS) + [
    "bogus", "IP", "ipx", "slow", "lldp", "loopback"])
def test_builtin_tables_match_libpcaps(lib, name):
    e = lib.pcap_nametoeproto(name.encode())
    assert names.ethertype_number(name) == (None if e == PROTO_UNDEF else e)
    s = lib.pcap_nametollc(name.encode())
    assert names.llc_sap_number(name) == (None if s == PROTO_UNDEF else s)


def test_builtin_table_values():
    assert names.ethertype_number("ip") == 0x0800 and names.ethertype_number("ip6") == 0x86DD
    assert names.ethertype_number("arp") == 0x0806 and names.ethertype_number("rarp") == 0x8035
    assert names.llc_sap_number("stp") == 0x42 and names.llc_sap_number("iso") == 0xFE
    assert names.iso_proto_number("clnp") == 0x81 and names.iso_proto_number("isis") == 0x83


@pytest.mark.parametrize("name", ["loopback", "link-local", "default", "nosuchnet"])
def test_networks_resolve_as_pcap_nametonetaddr_does(lib, name):
    theirs = lib.pcap_nametonetaddr(name.encode())
    assert names.network_number(name) == (theirs or None)


def test_networks_file_fallback_reads_numbers_and_aliases(tmp_path):
    f = tmp_path / "networks"
    f.write_text("# comment\nlocalnet 10.20 lan\nzero 0\n")
    assert names._network_from_file("lan", f) == 0x0A14
    assert names._network_from_file("zero", f) is None
    assert names._network_from_file("other", f) is None


@pytest.mark.parametrize("text", ["aa:bb:cc:dd:ee:ff", "aa-bb-cc-dd-ee-ff", "aa.bb.cc.dd.ee.ff",
                                  "aabb.ccdd.eeff", "aabbccddeeff", "1:2:3:4:5:6", "A:b:C:d:E:f"])
def test_mac_notations_parse_as_pcap_ether_aton_does(lib, text):
    p = lib.pcap_ether_aton(text.encode())
    assert names.parse_mac(text) == bytes(p[i] for i in range(6))


@pytest.mark.parametrize("text", ["aa:bb:cc", "aa:bb:cc:dd:ee:ff:00", "gg:bb:cc:dd:ee:ff", ""])
def test_malformed_mac_is_a_filter_error(text):
    with pytest.raises(FilterError):
        names.parse_mac(text)


@pytest.mark.parametrize("text,expected", [
    ("10", (10, 1)), ("10.1", (0x0A01, 2)), ("192.168.1", (0xC0A801, 3)),
    ("1.2.3.4", (0x01020304, 4)), ("010.0.0.1", (0x0A000001, 4)),
])
def test_ipv4_text_keeps_its_number_of_parts(text, expected):
    assert names.parse_ipv4(text) == expected


@pytest.mark.parametrize("text", ["256.0.0.1", "1.2.3.4.5", "0x10.1", "1..2", ""])
def test_invalid_ipv4_text_is_a_filter_error(text):
    with pytest.raises(FilterError):
        names.parse_ipv4(text)


def test_ipv6_text_becomes_sixteen_bytes():
    assert names.parse_ipv6("::ffff:1.2.3.4") == bytes(10) + b"\xff\xff\x01\x02\x03\x04"
    with pytest.raises(FilterError):
        names.parse_ipv6("1:::2")


def test_decnet_addresses():
    assert names.parse_decnet("1.1") == (1 << 10) | 1
    assert names.parse_decnet("50.764") == (50 << 10) | 764
    assert names.parse_decnet("10") is None


def test_host_names_resolve_to_every_address():
    v4, v6 = names.host_addresses("localhost")
    assert 0x7F000001 in v4 or socket.inet_pton(socket.AF_INET6, "::1") in v6
    assert names.host_addresses("nosuchhost.invalid") == ([], [])


def test_unknown_ether_host_is_none():
    assert names.ether_host("nosuchether") is None


def test_named_constants_have_libpcaps_values():
    c = names.NAMED_CONSTANTS
    assert (c["icmptype"], c["icmpcode"], c["icmp6type"], c["icmp6code"], c["tcpflags"]) == \
        (0, 1, 0, 1, 13)
    assert (c["icmp-echoreply"], c["icmp-echo"], c["icmp-maskreply"]) == (0, 8, 18)
    assert (c["icmp6-echo"], c["icmp6-multicastrouterterm"]) == (128, 153)
    assert [c[f"tcp-{f}"] for f in ("fin", "syn", "rst", "push", "ack", "urg", "ece", "cwr")] == \
        [1, 2, 4, 8, 16, 32, 64, 128]
    assert names.named_constant("icmp-bogus") is None


def test_enormous_texts_are_refused_cleanly():
    with pytest.raises(FilterError):
        names.parse_ipv4("1" * 5000 + ".1")
    assert names.port_range("1" * 5000 + "-2")[0] > 65535
