# The C-level entry point of the VM, for other extensions (pfilter/capture/_fastcopy.pyx):
# run a decoded program (bytes from pfilter._vm.decode) over packets at base + offsets[i].
from libc.stdint cimport int64_t, uint8_t, uint32_t

cdef void run_packets(const uint8_t* prog, bint clear_mem, const uint8_t* base, const int64_t* offsets,
                      const uint32_t* caplen, const uint32_t* wirelen, Py_ssize_t n,
                      uint32_t* out) noexcept nogil
