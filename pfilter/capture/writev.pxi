# Included by _writer.pyx and _fastcopy.pyx: write a list of buffers completely with writev().
from posix.uio cimport iovec, writev

cdef extern from "<errno.h>":
    int errno
    int EINTR


cdef int write_all(int fd, iovec* vec, int cnt) noexcept nogil:
    """writev every byte of vec[0:cnt] (cnt <= IOV_MAX), finishing partial writes and retrying
    after EINTR; 0, or the errno of a failed write. Advances vec's entries as it goes."""
    cdef int j = 0
    cdef ssize_t got
    while j < cnt:
        got = writev(fd, &vec[j], cnt - j)
        if got < 0:
            if errno == EINTR:
                continue
            return errno
        while j < cnt and got >= <ssize_t>vec[j].iov_len:
            got -= vec[j].iov_len
            j += 1
        if j < cnt and got > 0:
            vec[j].iov_base = <void*>(<uint8_t*>vec[j].iov_base + got)
            vec[j].iov_len -= got
    return 0
