/* The guest's vsock tool for scripts/boot-smoke.sh, built static into the
 * smoke rootfs (BusyBox has no vsock applet).
 *
 *   smoke-vsock echo PORT SECONDS    accept one connection on PORT and echo
 *                                    what it reads until the peer shuts down
 *   smoke-vsock send CID PORT TEXT   connect, send TEXT, shut down the send
 *                                    side, print what comes back
 *
 * Exits 0 on success, 1 with a message on standard error otherwise. */
#include <errno.h>
#include <linux/vm_sockets.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

static int fail(const char *what)
{
    fprintf(stderr, "smoke-vsock: %s: %s\n", what, strerror(errno));
    return 1;
}

static void limit_time(int fd, int seconds)
{
    struct timeval tv = { .tv_sec = seconds };
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
}

static int echo(unsigned port, int seconds)
{
    int listener = socket(AF_VSOCK, SOCK_STREAM, 0);
    if (listener < 0)
        return fail("socket");
    struct sockaddr_vm addr = { .svm_family = AF_VSOCK, .svm_cid = VMADDR_CID_ANY, .svm_port = port };
    if (bind(listener, (struct sockaddr *)&addr, sizeof addr) || listen(listener, 1))
        return fail("bind/listen");
    printf("listening %u\n", port);
    fflush(stdout);
    limit_time(listener, seconds);
    int conn = accept(listener, NULL, NULL);
    if (conn < 0)
        return fail("accept");
    limit_time(conn, seconds);
    char buf[4096];
    long total = 0;
    for (;;) {
        ssize_t got = read(conn, buf, sizeof buf);
        if (got < 0)
            return fail("read");
        if (got == 0)
            break;
        for (ssize_t done = 0; done < got;) {
            ssize_t put = write(conn, buf + done, (size_t)(got - done));
            if (put <= 0)
                return fail("write");
            done += put;
        }
        total += got;
    }
    printf("echoed %ld\n", total);
    close(conn);
    close(listener);
    return 0;
}

static int send_text(unsigned cid, unsigned port, const char *text)
{
    int fd = socket(AF_VSOCK, SOCK_STREAM, 0);
    if (fd < 0)
        return fail("socket");
    limit_time(fd, 20);
    struct sockaddr_vm addr = { .svm_family = AF_VSOCK, .svm_cid = cid, .svm_port = port };
    if (connect(fd, (struct sockaddr *)&addr, sizeof addr))
        return fail("connect");
    size_t length = strlen(text);
    if (write(fd, text, length) != (ssize_t)length)
        return fail("write");
    shutdown(fd, SHUT_WR);
    char buf[4096];
    ssize_t got, total = 0;
    while ((got = read(fd, buf + total, sizeof buf - 1 - (size_t)total)) > 0)
        total += got;
    if (got < 0)
        return fail("read");
    buf[total] = 0;
    printf("reply %s\n", buf);
    close(fd);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc == 4 && !strcmp(argv[1], "echo"))
        return echo((unsigned)atoi(argv[2]), atoi(argv[3]));
    if (argc == 5 && !strcmp(argv[1], "send"))
        return send_text((unsigned)atoi(argv[2]), (unsigned)atoi(argv[3]), argv[4]);
    fprintf(stderr, "usage: smoke-vsock echo PORT SECONDS | send CID PORT TEXT\n");
    return 2;
}
