/* SPDX-License-Identifier: MIT */
/* Lines from a file descriptor, read with read(2) rather than stdio, so
 * that the interactive session can poll() standard input and the socket
 * together without stdio holding lines poll() cannot see. */

#include <errno.h>
#include <string.h>
#include <unistd.h>

#include "uppercase.h"

void line_reader_init(struct line_reader *lr, int fd) {
        lr->fd = fd;
        lr->eof = false;
        lr->len = lr->used = 0;
}

/* Moves what is left of the buffer to its start, making room for a read. */
static void compact(struct line_reader *lr) {
        if (lr->used == 0)
                return;
        memmove(lr->buf, lr->buf + lr->used, lr->len - lr->used);
        lr->len -= lr->used;
        lr->used = 0;
}

int line_reader_fill(struct line_reader *lr) {
        ssize_t n;

        compact(lr);
        if (lr->len == sizeof(lr->buf))
                return -EMSGSIZE;
        do
                n = read(lr->fd, lr->buf + lr->len, sizeof(lr->buf) - lr->len);
        while (n < 0 && errno == EINTR);
        if (n < 0)
                return -errno;
        if (n == 0)
                lr->eof = true;
        lr->len += (size_t) n;
        return (int) n;
}

int line_reader_take(struct line_reader *lr, const char **ret_line, size_t *ret_len) {
        size_t len, used;
        int r;

        r = client_split_line(lr->buf + lr->used, lr->len - lr->used, lr->eof,
                              sizeof(lr->buf), &len, &used);
        if (r <= 0)
                return r;
        *ret_line = lr->buf + lr->used;
        *ret_len = len;
        lr->used += used;
        return 1;
}

int line_reader_next(struct line_reader *lr, const char **ret_line, size_t *ret_len) {
        int r;

        for (;;) {
                r = line_reader_take(lr, ret_line, ret_len);
                if (r != 0 || lr->eof)
                        return r;
                r = line_reader_fill(lr);
                if (r < 0)
                        return r;
        }
}
