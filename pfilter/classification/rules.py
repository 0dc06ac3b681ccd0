"""pfilter.classification.rules: the rules of pfilter.classify as (name, rule) pairs (a mapping, a
list of expressions or a rules file), and their programs compiled per link type.

Imports pfilter.errors, and at call time pfilter.compiler (through its program cache) and pfilter.program.
"""
from __future__ import annotations

import os
import warnings
from collections.abc import Mapping
from pathlib import Path

from ..errors import FilterError, FilterSyntaxError
from ..opcodes import BPF_K, BPF_RET

__all__ = ["parse_rules", "is_program", "RuleLinkTypeWarning", "RuleSet"]


def parse_rules(rules):
    """Normalise `rules` into a list of (name, rule) pairs, rule an expression string or a
    Program. Accepts a mapping name -> rule, a list of expressions (names = the expressions), or
    the path of a rules file: `name: expression` per line, `#` starts a comment, blank lines are
    ignored. Names are non-empty and unique (a rules file's also without whitespace or ':'). A
    string is always a rules file's name: one that does not exist and looks like an expression
    (no '.' or '/': 'tcp port 80') raises FileNotFoundError saying how to give one instead."""
    if isinstance(rules, (str, os.PathLike)):
        if isinstance(rules, str) and not any(c in rules for c in "./") and not os.path.lexists(rules):
            import errno
            raise FileNotFoundError(errno.ENOENT, f"no such rules file (a string names a rules file; for an "
                                                  f"expression give [{rules!r}] or {{'name': {rules!r}}})", rules)
        return _read_rules_file(Path(rules))
    if isinstance(rules, Mapping):
        pairs = [(k, v) for k, v in rules.items()]
    else:
        try:
            items = list(rules)
        except TypeError:
            raise FilterError(f"rules must be a mapping, a list of expressions or a rules file, "
                              f"not {type(rules).__name__}") from None
        pairs = [(e, e) for e in items]
    seen = set()
    out = []
    for name, rule in pairs:
        if not isinstance(name, str) or not name.strip():
            raise FilterError(f"rule name must be a non-empty string, not {name!r}")
        if not isinstance(rule, str) and not is_program(rule):
            raise FilterError(f"rule {name!r}: expected an expression or a Program, not {type(rule).__name__}")
        if name in seen:
            raise FilterError(f"duplicate rule name {name!r}")
        seen.add(name)
        out.append((name, rule))
    if not out:
        raise FilterError("no rules given")
    return out


class _FilePairs(list):
    """The (name, expression) pairs of a rules file; `where` maps each name to 'FILE:LINE', which
    a rule's error names (RuleSet.rule)."""
    where: dict


def _read_rules_file(path):
    from .._textfile import read_text_file
    text = read_text_file(path, "rules file")     # OSError when it cannot be read
    out, where = _FilePairs(), {}
    for lineno, line in enumerate(text.split("\n"), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        name, sep, expr = line.partition(":")
        name, expr = name.strip(), expr.strip()
        if not sep or not name or any(c.isspace() for c in name):
            raise FilterError(f"{path}:{lineno}: expected 'name: expression', got {line!r}")
        if not expr:
            raise FilterError(f"{path}:{lineno}: rule {name!r} has no expression")
        if name in where:
            raise FilterError(f"{path}:{lineno}: duplicate rule name {name!r} (first on line {where[name]})")
        where[name] = lineno
        out.append((name, expr))
    if not out:
        raise FilterError(f"{path}: no rules in the file")
    out.where = {name: f"{path}:{lineno}" for name, lineno in where.items()}
    return out


def is_program(obj):
    return hasattr(obj, "to_tuples") and hasattr(obj, "instructions")


def inapplicable_message(name, lt_name, reason):
    """What a RuleLinkTypeWarning says of one (rule, link type name, reason) of
    Classification.inapplicable."""
    return (f"rule {name!r} cannot apply to link type {lt_name} ({reason}): it matches "
            f"no packet of that link type")


def caller_stacklevel():
    """The warnings.warn stacklevel of the first frame outside the pfilter package, for a warn()
    in the function calling this one: the user's line that called pfilter (classify, dask)."""
    import os
    import sys
    package = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep
    frame, level = sys._getframe(1), 1
    while frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(package):
        frame, level = frame.f_back, level + 1
    return level


class RuleLinkTypeWarning(UserWarning):
    """A rule has no meaning on a link type of the input (`ether host ...` on a NULL capture,
    `vlan` on raw IP): it matches no packet of that link type. Classification.inapplicable
    lists every such (rule, link type, reason)."""


class RuleSet:
    """The rules compiled lazily, once per link type, and handed to `engine_for`."""

    def __init__(self, pairs, optimize, snaplen, forced_linktype=False, engine_for=lambda progs: progs):
        self.pairs, self.optimize, self.snaplen = pairs, optimize, snaplen
        self._where = getattr(pairs, "where", {})      # a rules file's 'FILE:LINE' per name
        self.forced_linktype = forced_linktype
        #: what runs the programs of one link type (pfilter.classification.run.engine_for)
        self.engine_for = engine_for
        #: (rule name, link type name, reason) of each rule that cannot apply to a link type
        self.inapplicable = []
        self._by_linktype = {}

    def rule(self, name, *more):
        """How an error names a rule: `rule 'web'`, then in parentheses where a rules file has it
        and `more` (the link type)."""
        said = [w for w in (self._where.get(name),) + more if w]
        return f"rule {name!r} ({', '.join(said)})" if said else f"rule {name!r}"

    def _compile(self, rule, linktype):
        from ..compiler.cache import cached_compile
        from ..compiler.driver import SHAREABLE
        # IPv4 and IPv6 copies of a test kept apart: each is then shared across rules. Through
        # the compiled-program cache, as filter_file: a repeated rule set skips the compiler.
        return cached_compile(rule, linktype=linktype, snaplen=self.snaplen,
                              optimize=SHAREABLE if self.optimize else False)

    def _applies_elsewhere(self, rule, linktype):
        """True when the rule compiles for some other common link type: its error on
        `linktype` is then about that link type, not about the rule."""
        from ..linktypes import DESCRIPTIONS
        for other in [1] + sorted(DESCRIPTIONS):
            if other == linktype:
                continue
            try:
                self._compile(rule, other)
            except FilterError:
                continue
            return True
        return False

    def programs(self, linktype):
        """engine_for(the rules' programs for `linktype`), compiled and chosen once per link type."""
        entry = self._by_linktype.get(linktype)
        if entry is None:
            progs = []
            for name, rule in self.pairs:
                if is_program(rule):
                    try:        # a Program runs only on its own link type
                        getattr(rule, "check_linktype", lambda *a: None)([linktype], "the input's packets")
                    except FilterError as e:
                        raise FilterError(f"{self.rule(name)}: {e}") from None
                    progs.append(rule)
                    continue
                try:
                    progs.append(self._compile(rule, linktype))
                except FilterSyntaxError as e:
                    raise FilterSyntaxError(f"{self.rule(name)}: {e.message}", e.expression, e.position,
                                            e.length) from e
                except FilterError as e:
                    from ..linktypes import linktype_name
                    lt_name = linktype_name(linktype)
                    # A rule the input's link type gives no meaning to (`ether host` on NULL)
                    # matches nothing there; one that compiles nowhere, or for the link type
                    # the caller named, is an error.
                    if self.forced_linktype or not self._applies_elsewhere(rule, linktype):
                        raise FilterError(f"{self.rule(name, f'link type {lt_name}')}: {e}") from e
                    reason = str(e).split("\n")[0]
                    self.inapplicable.append((name, lt_name, reason))
                    warnings.warn(RuleLinkTypeWarning(inapplicable_message(name, lt_name, reason)),
                                  stacklevel=caller_stacklevel())
                    from ..program import Program
                    progs.append(Program.from_tuples([(BPF_RET | BPF_K, 0, 0, 0)], linktype=linktype,
                                                     snaplen=self.snaplen))
            entry = self._by_linktype[linktype] = self.engine_for(progs)
        return entry
