/* SPDX-License-Identifier: MIT */
/* Line editing for the interactive sessions, with libedit: the "> "
 * prompt, the arrow keys, Emacs-style editing and the history of the
 * session (up and down arrows), when standard input is a terminal.
 *
 * libedit reads the terminal through editor_getc(), which waits on a
 * second descriptor as well (the TCP session's socket): when that one has
 * something first, the line being typed is given up and editor_read()
 * says so, so that a server that closes the session is noticed at once,
 * as without editing.  Text is UTF-8: the protocol's and the lab's. */

#include <errno.h>
#include <histedit.h>
#include <langinfo.h>
#include <locale.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>
#include <wchar.h>

#include "uppercase.h"

#define EDITOR_HISTORY 500

struct editor {
        EditLine *el;
        History *hist;
        int in_fd;
        int watch_fd;
        bool watched_ready;     /* watch_fd woke the last editor_getc() */
        int err;                /* its read error, -errno */
        mbstate_t mbs;
};

static const char *editor_prompt(EditLine *el) {
        return "> ";
}

/* libedit reads and decodes wide characters in the C library's locale:
 * one whose codeset is UTF-8, the user's if it is. */
static bool editor_utf8_locale(void) {
        if (setlocale(LC_CTYPE, "") && strcmp(nl_langinfo(CODESET), "UTF-8") == 0)
                return true;
        return setlocale(LC_CTYPE, "C.UTF-8") != NULL;
}

/* One character for libedit: 1, 0 at the end of input, -1 when the
 * watched descriptor is ready first or on an error. */
static int editor_getc(EditLine *el, wchar_t *wc) {
        struct editor *e;
        unsigned char byte;
        size_t k;

        el_get(el, EL_CLIENTDATA, &e);
        for (;;) {
                struct pollfd fds[2] = {
                        { .fd = e->in_fd, .events = POLLIN },
                        { .fd = e->watch_fd, .events = POLLIN },
                };
                ssize_t n;

                if (poll(fds, 2, -1) < 0) {
                        if (errno == EINTR)
                                continue;
                        e->err = -errno;
                        return -1;
                }
                if (fds[1].revents) {
                        e->watched_ready = true;
                        return -1;
                }
                if (!fds[0].revents)
                        continue;
                n = read(e->in_fd, &byte, 1);
                if (n < 0 && (errno == EINTR || errno == EAGAIN))
                        continue;
                if (n < 0) {
                        e->err = -errno;
                        return -1;
                }
                if (n == 0)
                        return 0;
                k = mbrtowc(wc, (const char *) &byte, 1, &e->mbs);
                if (k == (size_t) -2)
                        continue;               /* more bytes of one character */
                if (k == (size_t) -1) {
                        /* Not UTF-8: a character to see and delete. */
                        memset(&e->mbs, 0, sizeof(e->mbs));
                        *wc = 0xFFFD;
                }
                return 1;
        }
}

struct editor *editor_new(int in_fd) {
        struct editor *e;
        HistEvent ev;

        if (!isatty(in_fd) || !editor_utf8_locale())
                return NULL;
        e = calloc(1, sizeof(*e));
        if (!e)
                return NULL;
        *e = (struct editor) { .in_fd = in_fd, .watch_fd = -1 };
        /* The prompt and the echo on stderr, as the prompt without editing:
         * "uppercase | tee log" logs the replies only. */
        e->el = el_init("uppercase", stdin, stderr, stderr);
        e->hist = history_init();
        if (!e->el || !e->hist) {
                editor_free(e);
                return NULL;
        }
        history(e->hist, &ev, H_SETSIZE, EDITOR_HISTORY);
        history(e->hist, &ev, H_SETUNIQUE, 1);
        el_set(e->el, EL_EDITOR, "emacs");
        el_set(e->el, EL_HIST, history, e->hist);
        el_set(e->el, EL_PROMPT, editor_prompt);
        /* Ctrl-C and friends: the terminal is put back before we die. */
        el_set(e->el, EL_SIGNAL, 1);
        el_set(e->el, EL_CLIENTDATA, e);
        el_set(e->el, EL_GETCFN, editor_getc);
        el_source(e->el, NULL);                 /* ~/.editrc, if any */
        return e;
}

void editor_free(struct editor *e) {
        if (!e)
                return;
        if (e->el)
                el_end(e->el);
        if (e->hist)
                history_end(e->hist);
        free(e);
}

/* libedit puts the terminal in raw mode after it has printed the prompt:
 * what is typed in between would be echoed twice, by the terminal and by
 * libedit.  So the echo is off from before the prompt.  libedit takes
 * over from a mode that is not canonical without adopting it, and gives
 * the terminal back as it found it at el_init(), echo on. */
static void editor_quiet_terminal(struct editor *e) {
        struct termios t;

        if (tcgetattr(e->in_fd, &t) < 0 || !(t.c_lflag & (ICANON | ECHO)))
                return;
        t.c_lflag &= ~(tcflag_t) (ICANON | ECHO);
        t.c_cc[VMIN] = 1;
        t.c_cc[VTIME] = 0;
        (void) tcsetattr(e->in_fd, TCSANOW, &t);
}

int editor_read(struct editor *e, int watch_fd, const char **ret_line, size_t *ret_len) {
        const char *line;
        HistEvent ev;
        int n = 0;
        size_t len;

        e->watch_fd = watch_fd;
        e->watched_ready = false;
        e->err = 0;
        editor_quiet_terminal(e);
        line = el_gets(e->el, &n);
        if (e->watched_ready)
                return -EAGAIN;
        if (e->err < 0)
                return e->err;
        if (!line || n <= 0)
                return 0;
        len = (size_t) n;
        if (line[len - 1] == '\n')
                len--;
        if (len > CLIENT_LINE_MAX - 1)
                return -EMSGSIZE;
        if (len > 0 && !client_is_quit_line(line, len))
                history(e->hist, &ev, H_ENTER, line);
        *ret_line = line;
        *ret_len = len;
        return 1;
}
