"""The pcap-filter compiler: lexer -> parser -> AST -> lower(LinkContext) -> blocks -> emit.

May import pfilter.errors, pfilter.opcodes and pfilter.program; never the VM or capture I/O.
"""
