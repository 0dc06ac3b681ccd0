/* Runs libpcap's own userland interpreter, bpf_filter(), over a batch of packets laid out like
 * pfilter's PacketBatch (one data buffer, offsets, caplen, wirelen). Built by the tests at run time
 * (cc -shared ... -lpcap) so the reference is the real libpcap, not a reimplementation. */
#include <stdint.h>
#include <pcap/pcap.h>

void libpcap_run_batch(const struct bpf_insn *insns, const uint8_t *data, const int64_t *offsets,
                       const uint32_t *caplen, const uint32_t *wirelen, int64_t n, uint32_t *out)
{
    for (int64_t i = 0; i < n; i++)
        out[i] = bpf_filter(insns, data + offsets[i], wirelen[i], caplen[i]);
}
