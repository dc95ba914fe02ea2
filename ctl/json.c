/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "output.h"

/* How a value is written.  Anything not listed is a number when it looks
 * like one and a string otherwise; the listed keys keep one JSON type
 * whatever their value, so consumers can rely on it. */
enum json_kind {
        JSON_AUTO,
        JSON_STRING,
        JSON_BOOL,              /* "yes"/"no" */
        JSON_LIST,              /* an array even with one element */
};

static const struct {
        const char *name;       /* the last part of a dotted key */
        enum json_kind kind;
} json_kinds[] = {
        { "version",          JSON_STRING },
        { "model",            JSON_STRING },
        { "state",            JSON_STRING },
        { "config",           JSON_STRING },
        { "socket_activated", JSON_BOOL },
        { "udp_loop_guard",   JSON_BOOL },
        { "listen",           JSON_LIST },
        { "agent",            JSON_LIST },
        { "instance",         JSON_STRING },
        { "balancer",         JSON_STRING },
        { "changed",          JSON_BOOL },
        { "draining",         JSON_BOOL },
        { "exempt",           JSON_LIST },
        { "trusted",          JSON_LIST },
        { "peer",             JSON_STRING },
        { "address",          JSON_STRING },
        { "via",              JSON_STRING },
        { "protocol",         JSON_STRING },
};

static enum json_kind json_kind_of(const char *name, size_t len) {
        for (size_t i = 0; i < sizeof(json_kinds) / sizeof(json_kinds[0]); i++)
                if (strlen(json_kinds[i].name) == len && memcmp(json_kinds[i].name, name, len) == 0)
                        return json_kinds[i].kind;
        return JSON_AUTO;
}

/* --- strings --- */

/* Length of the valid UTF-8 sequence at s (NUL-terminated), 0 if invalid:
 * no overlong forms, no surrogates, nothing above U+10FFFF. */
static size_t utf8_sequence(const unsigned char *s) {
        unsigned cp;
        size_t n;

        if (s[0] < 0x80)
                return 1;
        if (s[0] >= 0xc2 && s[0] <= 0xdf)
                n = 2, cp = s[0] & 0x1f;
        else if (s[0] >= 0xe0 && s[0] <= 0xef)
                n = 3, cp = s[0] & 0x0f;
        else if (s[0] >= 0xf0 && s[0] <= 0xf4)
                n = 4, cp = s[0] & 0x07;
        else
                return 0;
        for (size_t i = 1; i < n; i++) {
                if ((s[i] & 0xc0) != 0x80)
                        return 0;
                cp = cp << 6 | (s[i] & 0x3f);
        }
        if ((n == 3 && cp < 0x800) || (n == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
            (cp >= 0xd800 && cp <= 0xdfff))
                return 0;
        return n;
}

static const char *json_escape(unsigned char c) {
        switch (c) {
        case '"':  return "\\\"";
        case '\\': return "\\\\";
        case '\b': return "\\b";
        case '\f': return "\\f";
        case '\n': return "\\n";
        case '\r': return "\\r";
        case '\t': return "\\t";
        default:   return NULL;
        }
}

/* Appends the character at p, escaped as needed; returns its length. */
static size_t json_append_char(struct textbuf *out, const unsigned char *p, const unsigned char *end) {
        const char *esc = json_escape(*p);
        size_t n = utf8_sequence(p);

        if (esc)
                textbuf_printf(out, "%s", esc);
        else if (*p < 0x20)
                textbuf_printf(out, "\\u%04x", *p);
        else if (n == 0 || n > (size_t) (end - p))
                textbuf_printf(out, "\\ufffd");
        else {
                textbuf_append(out, (const char *) p, n);
                return n;
        }
        return 1;
}

static void json_append_stringn(struct textbuf *out, const char *s, size_t len) {
        const unsigned char *p = (const unsigned char *) s, *end = p + len;

        textbuf_append(out, "\"", 1);
        while (p < end)
                p += json_append_char(out, p, end);
        textbuf_append(out, "\"", 1);
}

void json_append_string(struct textbuf *out, const char *s) {
        json_append_stringn(out, s, strlen(s));
}

static void json_append_value(struct textbuf *out, const char *v, enum json_kind kind) {
        if (kind == JSON_BOOL && (strcmp(v, "yes") == 0 || strcmp(v, "no") == 0))
                textbuf_printf(out, "%s", v[0] == 'y' ? "true" : "false");
        else if (kind != JSON_STRING && kind != JSON_BOOL && ctl_is_number(v))
                textbuf_printf(out, "%s", v);
        else
                json_append_string(out, v);
}

/* --- the tree of dotted keys --- */

struct json_node {
        const char *name;               /* not NUL-terminated */
        size_t name_len;
        bool object;
        struct json_node *first, *last, *next;
        const char **values;            /* a leaf: its values, in order */
        size_t n_values;
};

static void node_free(struct json_node *n) {
        while (n) {
                struct json_node *next = n->next;

                node_free(n->first);
                free(n->values);
                free(n);
                n = next;
        }
}

static struct json_node *node_child(struct json_node *parent, const char *name, size_t len) {
        struct json_node *c;

        for (c = parent->first; c; c = c->next)
                if (c->name_len == len && memcmp(c->name, name, len) == 0)
                        return c;
        c = calloc(1, sizeof(*c));
        if (!c)
                return NULL;
        c->name = name;
        c->name_len = len;
        if (parent->last)
                parent->last->next = c;
        else
                parent->first = c;
        parent->last = c;
        return c;
}

static int node_add_value(struct json_node *n, const char *value) {
        const char **v = realloc(n->values, (n->n_values + 1) * sizeof(*v));

        if (!v)
                return -ENOMEM;
        v[n->n_values++] = value;
        n->values = v;
        return 0;
}

/* A key that is both a value and a group ("a 1" and "a.b 2") has no JSON
 * form; the daemon never sends one. */
static int tree_insert(struct json_node *root, const char *key, const char *value) {
        struct json_node *n = root;

        for (const char *p = key;;) {
                const char *dot = strchr(p, '.');
                size_t len = dot ? (size_t) (dot - p) : strlen(p);

                if (len == 0)
                        return -EBADMSG;
                n = node_child(n, p, len);
                if (!n)
                        return -ENOMEM;
                if (!dot)
                        break;
                if (n->n_values > 0)
                        return -EBADMSG;
                n->object = true;
                p = dot + 1;
        }
        if (n->object)
                return -EBADMSG;
        return node_add_value(n, value);
}

static void node_write(const struct json_node *n, struct textbuf *out);

static void node_write_members(const struct json_node *n, struct textbuf *out) {
        textbuf_append(out, "{", 1);
        for (const struct json_node *c = n->first; c; c = c->next) {
                json_append_stringn(out, c->name, c->name_len);
                textbuf_append(out, ":", 1);
                node_write(c, out);
                if (c->next)
                        textbuf_append(out, ",", 1);
        }
        textbuf_append(out, "}", 1);
}

static void node_write(const struct json_node *n, struct textbuf *out) {
        enum json_kind kind = json_kind_of(n->name, n->name_len);

        if (n->object) {
                node_write_members(n, out);
                return;
        }
        if (kind != JSON_LIST && n->n_values == 1) {
                json_append_value(out, n->values[0], kind);
                return;
        }
        textbuf_append(out, "[", 1);
        for (size_t i = 0; i < n->n_values; i++) {
                json_append_value(out, n->values[i], kind == JSON_LIST ? JSON_AUTO : kind);
                if (i + 1 < n->n_values)
                        textbuf_append(out, ",", 1);
        }
        textbuf_append(out, "]", 1);
}

int ctl_json_fields(const struct ctl_reply *r, struct textbuf *out) {
        struct json_node root = { .object = true };
        int e = 0;

        for (size_t i = 0; i < r->n_fields && e == 0; i++)
                e = tree_insert(&root, r->fields[i].key, r->fields[i].value);
        if (e == 0) {
                node_write_members(&root, out);
                textbuf_append(out, "\n", 1);
        }
        node_free(root.first);
        return e < 0 ? e : ctl_output_result(out);
}

/* --- connections --- */

#define CONNECTION_PAIRS_MAX 32

/* "192.0.2.7:40512" or "[2001:db8::7]:40512": the address and the port. */
static int peer_split(const char *peer, const char **host, size_t *host_len, const char **port) {
        const char *colon;

        if (peer[0] == '[') {
                colon = strstr(peer, "]:");
                if (!colon)
                        return -EBADMSG;
                *host = peer + 1;
                *host_len = colon - peer - 1;
                *port = colon + 2;
        } else {
                colon = strrchr(peer, ':');
                if (!colon)
                        return -EBADMSG;
                *host = peer;
                *host_len = colon - peer;
                *port = colon + 1;
        }
        return ctl_is_number(*port) && (*port)[0] != '-' ? 0 : -EBADMSG;
}

static void json_append_peer(struct textbuf *out, const char *peer) {
        const char *host, *port;
        size_t host_len;

        if (peer_split(peer, &host, &host_len, &port) < 0)
                return;
        textbuf_printf(out, ",\"address\":");
        json_append_stringn(out, host, host_len);
        textbuf_printf(out, ",\"port\":%s", port);
}

static int json_append_connection(struct textbuf *out, const char *line) {
        struct ctl_field pairs[CONNECTION_PAIRS_MAX];
        char *copy = strdup(line);
        size_t n;
        int e;

        if (!copy)
                return -ENOMEM;
        e = ctl_split_pairs(copy, pairs, CONNECTION_PAIRS_MAX, &n);
        if (e < 0) {
                free(copy);
                return -EBADMSG;
        }
        textbuf_append(out, "{", 1);
        for (size_t i = 0; i < n; i++) {
                if (i > 0)
                        textbuf_append(out, ",", 1);
                json_append_string(out, pairs[i].key);
                textbuf_append(out, ":", 1);
                json_append_value(out, pairs[i].value, json_kind_of(pairs[i].key, strlen(pairs[i].key)));
                if (strcmp(pairs[i].key, "peer") == 0)
                        json_append_peer(out, pairs[i].value);
        }
        textbuf_append(out, "}", 1);
        free(copy);
        return 0;
}

int ctl_json_connections(const struct ctl_reply *r, struct textbuf *out) {
        textbuf_printf(out, "{\"connections\":[");
        for (size_t i = 0; i < r->n_fields; i++) {
                int e;

                if (strcmp(r->fields[i].key, "connection") != 0)
                        return -EBADMSG;
                if (i > 0)
                        textbuf_append(out, ",", 1);
                e = json_append_connection(out, r->fields[i].value);
                if (e < 0)
                        return e;
        }
        textbuf_printf(out, "]}\n");
        return ctl_output_result(out);
}

int ctl_json_reload(const struct ctl_reply *r, struct textbuf *out) {
        textbuf_printf(out, "{\"reloaded\":true}\n");
        return ctl_output_result(out);
}

int ctl_json_reset(const struct ctl_reply *r, struct textbuf *out) {
        textbuf_printf(out, "{\"reset\":true}\n");
        return ctl_output_result(out);
}
