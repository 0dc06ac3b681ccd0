"""The compiler driver: expression text to a validated Program.
Imports pfilter.errors, pfilter.program, pfilter.linktypes (optional), pfilter.optimizer
(optional) and the pfilter.compiler stages.

    parse (parser.py) -> lower (gencode.Codegen over a LinkContext) -> block graph
    -> linearize (emit.py) -> optimize (pfilter.optimizer, when asked and installed)
    -> Program.from_tuples (validation)

Programs are immutable, so compilations are memoized on (expression, DLT, snaplen, optimize,
netmask); the optimizer's work is shared across snapshot lengths (_optimized).
"""

import operator
from functools import lru_cache

from pfilter.errors import FilterError
from pfilter.compiler.emit import linearize
from pfilter.compiler.gencode import Codegen
from pfilter.compiler.linkctx import link_context
from pfilter.linktypes import linktype_number

__all__ = ["compile_expression", "compile_to_tuples", "resolve_linktype", "compile_with_origins"]

def resolve_linktype(linktype):
    """The DLT number libpcap would use for a link-type name or LINKTYPE/DLT number."""
    return linktype_number(linktype)


def _as_int(value):
    """value as a Python int when it is an integer (numpy integers included), else None."""
    if isinstance(value, (bool, str, bytes)):
        return None
    try:
        return operator.index(value)
    except TypeError:
        return None


def _parse(expr):
    from pfilter.compiler.parser import parse
    return parse(expr)


def compile_to_tuples(expr, dlt=1, snaplen=262144, netmask=None, savefile=True, swapped=False):
    """libpcap's unoptimized program for `expr` as a list of (code, jt, jf, k).

    `savefile` False compiles as libpcap does for a live or dead handle (what `tcpdump -y DLT
    -d` prints); it only changes `ip6` on NULL/LOOP (one AF_INET6 value instead of three).
    """
    return _generate(expr, dlt, snaplen, netmask, savefile, swapped)[0]


def _generate(expr, dlt, snaplen, netmask=None, savefile=True, swapped=False, origins=None):
    """(tuples, optimizable): the unoptimized program, and False when libpcap would not run
    its optimizer on it (block-local and backward jumps: protochain, Geneve, 802.11). A list
    `origins` receives each instruction's primitive span (None: the final `ret`s)."""
    if not isinstance(expr, str):
        raise FilterError(f"filter expression must be a string, not {type(expr).__name__}")
    if snaplen == 0:
        raise FilterError("snaplen of 0 rejects all packets")
    ctx = link_context(dlt)
    gen = Codegen(ctx, snaplen=snaplen, netmask=netmask, savefile=savefile, swapped=swapped,
                  track_origins=origins is not None)
    try:
        node = _parse(expr) if expr.strip() else None
        root = gen.compile(node)
    except RecursionError:
        raise FilterError("expression too deeply nested to compile") from None
    except FilterError as err:
        span = getattr(err, "span", None)
        if span is None:
            raise
        # a semantic error of the code generator: shown with a caret under its primitive
        from pfilter.compiler.parser import semantic_error
        raise semantic_error(str(err), expr, *span) from None
    return linearize(root, origins), not gen.no_optimize


#: BPF_RET|BPF_K: the code generator's `ret #k` (k: 0 rejects, the snaplen accepts)
_RET_K = 0x06
#: optimized programs by everything but the snaplen: (unoptimized tuples, optimized tuples, snaplen)
_OPTIMIZED = {}
_OPTIMIZED_MAX = 4096


def _relabel(tuples, old, new):
    """tuples with every `ret #old` made `ret #new`."""
    return [(c, jt, jf, new) if c == _RET_K and k == old else (c, jt, jf, k) for c, jt, jf, k in tuples]


def _optimized(tuples, key, snaplen, merge_twins, optimize_program):
    """optimize_program(tuples) for the compilation `key` (every argument but the snaplen), the
    work shared across snapshot lengths: the snaplen enters a program only as its accepting
    `ret #snaplen`, and the optimizer reads return values only as labels (equal or not, zero or
    not), so a program optimized at one snaplen is, with that `ret` relabelled, the program the
    optimizer makes at another (the same expression over captures of different snaplens, as in a
    directory of them, is optimized once). Taken only when the unoptimized program is the
    earlier one relabelled, both snaplens are non-zero and both programs return nothing but 0
    and the snaplen; tests/test_optimizer_snaplen.py compares with fresh runs."""
    hit = _OPTIMIZED.get(key)
    if hit is not None:
        unopt, opt, old = hit
        if old == snaplen and unopt == tuples:
            return opt
        if old and snaplen and _relabel(unopt, old, snaplen) == tuples:
            return _relabel(opt, old, snaplen)
    opt = optimize_program(tuples, merge_twins=merge_twins)
    if snaplen and all(k in (0, snaplen) for c, _, _, k in tuples + opt if c == _RET_K):
        if len(_OPTIMIZED) >= _OPTIMIZED_MAX:
            try:
                _OPTIMIZED.pop(next(iter(_OPTIMIZED)), None)      # the oldest
            except (RuntimeError, StopIteration):                # (another thread's change)
                pass
        _OPTIMIZED[key] = (tuples, opt, snaplen)
    return opt


@lru_cache(maxsize=4096)
def _compile_cached(expr, dlt, snaplen, optimize, netmask, swapped=False, savefile=True):
    from pfilter.program import Program
    from pfilter.validate import COMPILED_MAX_INSNS
    tuples, optimizable = _generate(expr, dlt, snaplen, netmask, savefile, swapped)
    if optimize and optimizable:
        try:
            from pfilter.optimizer import optimize_program
        except ImportError:
            optimize_program = None
        if optimize_program is not None:
            tuples = _optimized(tuples, (expr, dlt, optimize, netmask, swapped, savefile), snaplen,
                                optimize != SHAREABLE, optimize_program)
    prog = Program.from_tuples(tuples, linktype=dlt, snaplen=snaplen, source=expr, max_insns=COMPILED_MAX_INSNS)
    prog._compiled = (expr, dlt, snaplen, optimize, netmask, swapped, savefile)
    return prog


def compile_with_origins(expr, dlt, snaplen, optimize, netmask=None, swapped=False, savefile=True):
    """(tuples, origins): the program compile_expression makes (arguments as _compile_cached
    receives them), and for each instruction the frozenset of (start, end) spans of the
    primitives it came from; a merged instruction has them all, a final `ret` none.
    Compiling with provenance never changes the code."""
    spans = []
    tuples, optimizable = _generate(expr, dlt, snaplen, netmask, savefile, swapped, spans)
    origins = [frozenset() if s is None else frozenset((s,)) for s in spans]
    if optimize and optimizable:
        try:
            from pfilter.optimizer import optimize_with_origins
        except ImportError:
            optimize_with_origins = None
        if optimize_with_origins is not None:
            tuples, origins = optimize_with_origins(tuples, origins, merge_twins=optimize != SHAREABLE)
    return tuples, list(origins)


#: `optimize` value for programs that many rules run side by side (pfilter.classify): optimized,
#: but with the IPv6 and IPv4 copies of a transport test kept apart (no `merge_rebased`), so
#: that each copy reads its fields at a fixed place and the classifier can share it across rules.
SHAREABLE = "shareable"


def compile_expression(expr, linktype="EN10MB", snaplen=262144, optimize=True, netmask=None,
                       swapped=False, savefile=True):
    """Compile a pcap-filter expression into a Program (the meaning is libpcap 1.10.3's).

    `linktype` is a DLT/LINKTYPE name or number. `netmask` is the IPv4 netmask `ip broadcast`
    needs; None means unknown (libpcap's PCAP_NETMASK_UNKNOWN: `ip broadcast` is an error),
    0 is what tcpdump passes when reading a file. `swapped` True says the capture was written
    by a host of the other byte order (big-endian): NULL and ENC headers then hold the address
    family in that order, as libpcap assumes for such savefiles. `savefile` False compiles as
    libpcap does without a capture file (`tcpdump -y DLT -d`): `ip6` on NULL/LOOP then tests
    only Linux's AF_INET6 instead of the three BSD values a file may hold. An empty
    expression accepts every packet. `optimize` is True, False or SHAREABLE ("shareable").
    """
    dlt = resolve_linktype(linktype)
    snap = _as_int(snaplen)
    if snap is None or not 0 <= snap <= 0xFFFFFFFF:
        raise FilterError(f"invalid snaplen {snaplen!r}")
    if netmask is not None:
        mask = _as_int(netmask)
        if mask is None or not 0 <= mask <= 0xFFFFFFFF:
            raise FilterError(f"invalid netmask {netmask!r}")
        netmask = mask
    if not isinstance(expr, str):
        raise FilterError(f"filter expression must be a string, not {type(expr).__name__}")
    opt = SHAREABLE if optimize == SHAREABLE else bool(optimize)
    return _compile_cached(expr, dlt, snap, opt, netmask, bool(swapped), bool(savefile))


def _cache_clear():
    _compile_cached.cache_clear()
    _OPTIMIZED.clear()


compile_expression.cache_clear = _cache_clear
