"""pfilter.classification, the engine behind pfilter.classify(): many named filters over every
packet, in one pass.

    result = pfilter.classify("big.pcap", {"web": "tcp port 80 or tcp port 443",
                                           "dns": "udp port 53", "v6": "ip6"})
    result.counts, result.bytes        # packets and wire bytes per rule
    result.matrix                      # bool, packets x rules
    result.labels(default="other")     # first matching rule per packet

Modules: rules (rule lists and rules files, compiled per link type), plan (the shared-test
planner; its docstring explains the design and the correctness argument), result
(Classification), run (the driver: batches, threads, the engine chosen in engine_for). The
command line, `pfilter classify`, is in pfilter.cli. (The package is not named `classify`: that
is the public function pfilter.classify, which a sub-package of the same name would replace.)
"""
from .result import Classification
from .rules import RuleLinkTypeWarning, parse_rules
from .run import classify

__all__ = ["classify", "Classification", "RuleLinkTypeWarning", "parse_rules"]
