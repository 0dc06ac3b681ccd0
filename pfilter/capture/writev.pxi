# Included by _writer.pyx, _splitwrite.pyx and _fastcopy.pyx: write a list of buffers completely
# with writev().
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


cdef extern from "<limits.h>":
    int IOV_MAX


cdef inline int write_ranges(int fd, const uint8_t* d, const int64_t* starts, const int64_t* ends,
                             Py_ssize_t runs) noexcept nogil:
    """writev the ranges d[starts[r]:ends[r]] (r < runs) to fd in order, IOV_MAX at a time;
    0, or the errno of a failed write."""
    cdef iovec vec[1024]
    cdef Py_ssize_t r = 0, cnt
    cdef int err
    cdef int limit = 1024 if IOV_MAX > 1024 or IOV_MAX <= 0 else IOV_MAX
    while r < runs:
        cnt = 0
        while cnt < limit and r + cnt < runs:
            vec[cnt].iov_base = <void*>(d + starts[r + cnt])
            vec[cnt].iov_len = <size_t>(ends[r + cnt] - starts[r + cnt])
            cnt += 1
        err = write_all(fd, vec, <int>cnt)
        if err:
            return err
        r += cnt
    return 0
