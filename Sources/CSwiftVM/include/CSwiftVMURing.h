// io_uring through liburing, for the `Async` block io engine. liburing's API
// is mostly static inline functions over its own structs and macros; these
// wrappers keep Swift to opaque ring, SQE and CQE pointers, so that it never
// depends on liburing's struct layout. liburing returns failures as negative
// errno values rather than setting errno; the wrappers pass them through.
#pragma once

#include <stdint.h>
#include <sys/uio.h>

struct io_uring;
struct io_uring_sqe;
struct io_uring_cqe;

/// Allocates a ring and sets it up with room for `entries` submissions
/// (io_uring_queue_init). Returns NULL with `*error` set to the negative
/// errno on failure.
struct io_uring *svm_uring_queue_init(unsigned entries, int *error);
/// Tears the ring down (io_uring_queue_exit) and frees it.
void svm_uring_queue_exit(struct io_uring *ring);

/// The next free submission queue entry, or NULL when the queue is full.
struct io_uring_sqe *svm_uring_get_sqe(struct io_uring *ring);
/// IORING_OP_READ of `nbytes` into `buf` from `fd` at `offset`.
void svm_uring_prep_read(struct io_uring_sqe *sqe, int fd, void *buf, unsigned nbytes, uint64_t offset);
/// IORING_OP_WRITE of `nbytes` from `buf` to `fd` at `offset`.
void svm_uring_prep_write(struct io_uring_sqe *sqe, int fd, const void *buf, unsigned nbytes, uint64_t offset);
/// IORING_OP_FSYNC of `fd` (data and metadata).
void svm_uring_prep_fsync(struct io_uring_sqe *sqe, int fd);
/// The value the entry's completion carries back as its user data.
void svm_uring_sqe_set_data(struct io_uring_sqe *sqe, uint64_t data);

/// Submits the queued entries and waits for `wait_nr` completions
/// (io_uring_submit_and_wait). Returns the number submitted or a negative errno.
int svm_uring_submit_and_wait(struct io_uring *ring, unsigned wait_nr);
/// The next completion without waiting; 0, or -EAGAIN when there is none.
int svm_uring_peek_cqe(struct io_uring *ring, struct io_uring_cqe **cqe);
/// The next completion, waiting for one; 0 or a negative errno.
int svm_uring_wait_cqe(struct io_uring *ring, struct io_uring_cqe **cqe);
/// The operation's result: what the system call would return, or a negative errno.
int32_t svm_uring_cqe_res(const struct io_uring_cqe *cqe);
/// The user data of the entry this completion answers.
uint64_t svm_uring_cqe_user_data(const struct io_uring_cqe *cqe);
/// Hands the completion's slot back to the kernel.
void svm_uring_cqe_seen(struct io_uring *ring, struct io_uring_cqe *cqe);

/// Queues a vectored read or write of `nr` iovecs (IORING_OP_READV/WRITEV);
/// the iovec array must stay valid until the completion arrives.
void svm_uring_prep_readv(struct io_uring_sqe *sqe, int fd, const struct iovec *iovecs, unsigned nr, uint64_t offset);
void svm_uring_prep_writev(struct io_uring_sqe *sqe, int fd, const struct iovec *iovecs, unsigned nr, uint64_t offset);
/// Hands every queued entry to the kernel without waiting (io_uring_submit).
/// Returns the number submitted or a negative errno.
int svm_uring_submit(struct io_uring *ring);
/// Has the kernel signal `fd` (an eventfd) whenever it posts a completion
/// (io_uring_register_eventfd). Returns 0 or a negative errno.
int svm_uring_register_eventfd(struct io_uring *ring, int fd);
