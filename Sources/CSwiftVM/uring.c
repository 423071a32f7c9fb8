#include "CSwiftVMURing.h"

#include <errno.h>
#include <liburing.h>
#include <stdlib.h>

struct io_uring *svm_uring_queue_init(unsigned entries, int *error) {
    struct io_uring *ring = calloc(1, sizeof(*ring));
    if (ring == NULL) {
        *error = -ENOMEM;
        return NULL;
    }
    int result = io_uring_queue_init(entries, ring, 0);
    if (result < 0) {
        free(ring);
        *error = result;
        return NULL;
    }
    *error = 0;
    return ring;
}

void svm_uring_queue_exit(struct io_uring *ring) {
    io_uring_queue_exit(ring);
    free(ring);
}

struct io_uring_sqe *svm_uring_get_sqe(struct io_uring *ring) { return io_uring_get_sqe(ring); }

void svm_uring_prep_read(struct io_uring_sqe *sqe, int fd, void *buf, unsigned nbytes, uint64_t offset) {
    io_uring_prep_read(sqe, fd, buf, nbytes, offset);
}

void svm_uring_prep_write(struct io_uring_sqe *sqe, int fd, const void *buf, unsigned nbytes, uint64_t offset) {
    io_uring_prep_write(sqe, fd, buf, nbytes, offset);
}

void svm_uring_prep_fsync(struct io_uring_sqe *sqe, int fd) { io_uring_prep_fsync(sqe, fd, 0); }

void svm_uring_sqe_set_data(struct io_uring_sqe *sqe, uint64_t data) { io_uring_sqe_set_data64(sqe, data); }

int svm_uring_submit_and_wait(struct io_uring *ring, unsigned wait_nr) {
    return io_uring_submit_and_wait(ring, wait_nr);
}

int svm_uring_peek_cqe(struct io_uring *ring, struct io_uring_cqe **cqe) { return io_uring_peek_cqe(ring, cqe); }

int svm_uring_wait_cqe(struct io_uring *ring, struct io_uring_cqe **cqe) { return io_uring_wait_cqe(ring, cqe); }

int32_t svm_uring_cqe_res(const struct io_uring_cqe *cqe) { return cqe->res; }

uint64_t svm_uring_cqe_user_data(const struct io_uring_cqe *cqe) { return cqe->user_data; }

void svm_uring_cqe_seen(struct io_uring *ring, struct io_uring_cqe *cqe) { io_uring_cqe_seen(ring, cqe); }

void svm_uring_prep_readv(struct io_uring_sqe *sqe, int fd, const struct iovec *iovecs, unsigned nr, uint64_t offset) {
    io_uring_prep_readv(sqe, fd, iovecs, nr, offset);
}

void svm_uring_prep_writev(struct io_uring_sqe *sqe, int fd, const struct iovec *iovecs, unsigned nr, uint64_t offset) {
    io_uring_prep_writev(sqe, fd, iovecs, nr, offset);
}

int svm_uring_submit(struct io_uring *ring) { return io_uring_submit(ring); }

int svm_uring_register_eventfd(struct io_uring *ring, int fd) { return io_uring_register_eventfd(ring, fd); }
