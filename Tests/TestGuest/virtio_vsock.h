/* The virtio-vsock<i> check (virtio 1.2, 5.10): the guest's side of the
 * hybrid vsock protocol the host test speaks through swiftvm's Unix
 * sockets. */
#ifndef TESTGUEST_VIRTIO_VSOCK_H
#define TESTGUEST_VIRTIO_VSOCK_H

#include <stdint.h>

/* The packet header (5.10.6), 44 bytes, little-endian. */
struct vsock_hdr {
    uint64_t src_cid;
    uint64_t dst_cid;
    uint32_t src_port;
    uint32_t dst_port;
    uint32_t len;
    uint16_t type;
    uint16_t op;
    uint32_t flags;
    uint32_t buf_alloc;
    uint32_t fwd_cnt;
} __attribute__((packed));

#define VSOCK_HDR_SIZE 44
#define VSOCK_HOST_CID 2
#define VSOCK_TYPE_STREAM 1

#define VSOCK_OP_REQUEST 1
#define VSOCK_OP_RESPONSE 2
#define VSOCK_OP_RST 3
#define VSOCK_OP_SHUTDOWN 4
#define VSOCK_OP_RW 5
#define VSOCK_OP_CREDIT_UPDATE 6
#define VSOCK_OP_CREDIT_REQUEST 7

#define VSOCK_SHUTDOWN_RECV 1
#define VSOCK_SHUTDOWN_SEND 2

/* The ports and texts the host test (Tests/SwiftVMTests/VsockTests.swift)
 * expects. */
#define VSOCK_ECHO_PORT 5000    /* the guest listens here and echoes */
#define VSOCK_HOST_PORT 6000    /* the guest connects to the host here */
#define VSOCK_OUT_TEXT "SWIFTVM-VSOCK-OUT"
#define VSOCK_BACK_TEXT "SWIFTVM-VSOCK-BACK"

#endif
