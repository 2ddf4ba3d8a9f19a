/* tls-load.c - a ptpchat load generator that speaks plaintext and TLS through one code path.
 *
 * Why it exists: ../shared/bench/relay-load has no TLS mode, and a "TLS vs plaintext" ratio is
 * only fair when both sides of it come from the same client. Every byte goes through
 * conn_read()/conn_write(), which call read()/write() or SSL_read()/SSL_write(): the framing,
 * the JSON, the batching (one write per connection per loop pass), the epoll loop and the
 * accounting are the same for both modes. Only loopback targets (127.0.0.0/8) are accepted.
 *
 * Modes (--mode):
 *   thr    connections in pairs (2i <-> 2i+1), each keeps --window MESSAGEs un-ACKed
 *          (--payload characters), HELLO first; the recipient ACKs, the relay ACKs back to the
 *          sender. Bounded by --duration, then at most --drain seconds for what is outstanding.
 *          Prints one JSON line: delivered_per_s, hs_per_s, lost, dup, unacked, lat_p50/p99...
 *   hs     only the handshake phase of thr (connect, TLS, HELLO round trip): hs_per_s.
 *   hold   opens --conns connections that say HELLO (after the TLS handshake) and then stay idle
 *          (a keepalive frame every 20 s, whatever the relay sends is read and dropped). Prints
 *          one JSON line once all are ready, then holds them until SIGTERM/SIGINT or --hold s.
 *   flood  opens as many connections per second as it can for --duration seconds, at most
 *          --max-open at once, cycling over --flood-kind: `close` (connect, then reset), `junk`
 *          (send a frame that is not JSON, then reset), `idle` (connect, send nothing, keep it
 *          until --max-open forces the oldest out), `mix` (all three in turn). Prints one JSON line.
 *
 * Build: gcc -O2 -o tls-load tls-load.c -lssl -lcrypto
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#ifndef IP_BIND_ADDRESS_NO_PORT
#define IP_BIND_ADDRESS_NO_PORT 24
#endif

#define MAX_FRAME (16u << 20)
#define MAX_READ (256u << 10)
#define MAX_SRC 64
#define MAXEV 512

enum { M_THR, M_HS, M_HOLD, M_FLOOD };
enum { S_FREE, S_CONNECTING, S_TLS, S_HELLO, S_READY, S_DEAD };
enum { F_CLOSE, F_JUNK, F_IDLE };

typedef struct {
    char *p;
    size_t len, off, cap;
} buf_t;

typedef struct {
    int fd, state, idx, peer, kind;
    SSL *ssl;
    buf_t in, out;
    int dirty;
    size_t read_size; /* free space asked for before each read: 16 KiB, doubled up to MAX_READ */
    char node[37];
    /* thr accounting */
    uint64_t sent, outstanding;
    uint8_t *got; /* bitmap of sequence numbers received from the peer */
    uint8_t *acked; /* bitmap of own sequence numbers ACKed */
    size_t bits; /* capacity of both bitmaps in bits */
    char *tmpl; /* thr: this connection's MESSAGE frame (ids filled in), built at its first send */
} conn_t;

static struct {
    int mode, tls, conns, window, payload, hs_conc, max_open, flood_kind, quiet;
    double duration, warmup, drain, hold, hs_timeout;
    struct sockaddr_in addr;
    struct in_addr src[MAX_SRC];
    int nsrc;
    char label[64];
    SSL_CTX *ctx;
    int ep;
    conn_t *c;
    int *dirty;
    int ndirty;
} G = {.mode = M_THR, .conns = 100, .window = 64, .payload = 256, .hs_conc = 256, .max_open = 2000,
       .duration = 5, .warmup = 1, .drain = 2, .hold = 3600, .hs_timeout = 30, .flood_kind = -1};

static volatile sig_atomic_t stop_flag;

/* results */
static uint64_t n_sent, n_deliv, n_dup, n_acked, n_bad, n_err, n_ignored, n_hs_ok, n_hs_fail, n_closed_by_peer;
static uint64_t deliv_win, acked_win;
static uint64_t f_attempts, f_connected, f_refused, f_closed_by_server, f_junk_sent, f_peak_open, f_open;

/* ------------------------------------------------------------------ helpers */
static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void die(const char *m)
{
    fprintf(stderr, "tls-load: %s\n", m);
    exit(2);
}

static void buf_reserve(buf_t *b, size_t extra)
{
    if (b->off && b->off == b->len)
        b->off = b->len = 0;
    if (b->len + extra <= b->cap)
        return;
    if (b->off) { /* compact first */
        memmove(b->p, b->p + b->off, b->len - b->off);
        b->len -= b->off;
        b->off = 0;
        if (b->len + extra <= b->cap)
            return;
    }
    size_t cap = b->cap ? b->cap : 4096;
    while (cap < b->len + extra)
        cap *= 2;
    b->p = realloc(b->p, cap);
    if (!b->p)
        die("out of memory");
    b->cap = cap;
}

static void buf_free(buf_t *b)
{
    free(b->p);
    memset(b, 0, sizeof *b);
}

static void put_be32(char *o, uint32_t v)
{
    o[0] = (char)(v >> 24), o[1] = (char)(v >> 16), o[2] = (char)(v >> 8), o[3] = (char)v;
}

static int hexv(int ch)
{
    if (ch >= '0' && ch <= '9')
        return ch - '0';
    if (ch >= 'a' && ch <= 'f')
        return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F')
        return ch - 'A' + 10;
    return -1;
}

static int parse_hex(const char *s, int n, uint64_t *out)
{
    uint64_t v = 0;
    for (int i = 0; i < n; i++) {
        int h = hexv((unsigned char)s[i]);
        if (h < 0)
            return -1;
        v = (v << 4) | (uint64_t)h;
    }
    *out = v;
    return 0;
}

/* The string value of "key" at q (q points at the key's text, after its opening quote). */
static int jstr_at(const char *q, const char *e, size_t kl, const char **v, size_t *vl)
{
    const char *s = q + kl;
    if (s >= e || *s != '"')
        return -1;
    s++;
    while (s < e && (*s == ' ' || *s == '\t' || *s == '\n' || *s == '\r'))
        s++;
    if (s >= e || *s != ':')
        return -1;
    s++;
    while (s < e && (*s == ' ' || *s == '\t' || *s == '\n' || *s == '\r'))
        s++;
    if (s >= e || *s != '"')
        return -1;
    s++;
    const char *z = memchr(s, '"', (size_t)(e - s));
    if (!z)
        return -1;
    *v = s;
    *vl = (size_t)(z - s);
    return 0;
}

/* The string value of "key" in [p, e): the key found by name (any order, any whitespace), tried
 * first where it was last time (*hint: frames of one kind have one layout); no unescaping needed
 * for the values this tool reads (ids, hex and base64 without '/'). */
static int jstr(const char *p, const char *e, const char *key, size_t *hint, const char **v, size_t *vl)
{
    size_t kl = strlen(key);
    if (*hint && *hint + kl < (size_t)(e - p) && p[*hint - 1] == '"' && !memcmp(p + *hint, key, kl) &&
        !jstr_at(p + *hint, e, kl, v, vl))
        return 0;
    const char *s = p;
    while (s < e) {
        const char *q = memmem(s, (size_t)(e - s), key, kl);
        if (!q)
            return -1;
        s = q + kl;
        if (q == p || q[-1] != '"' || jstr_at(q, e, kl, v, vl))
            continue;
        *hint = (size_t)(q - p);
        return 0;
    }
    return -1;
}

/* A v4-shaped UUID: 8 hex digits of `a`, then 48 bits of `b` in the last group. */
static void uuid_for(char *o, uint32_t a, uint64_t b)
{
    snprintf(o, 37, "%08x-0000-4000-8000-%012llx", a, (unsigned long long)(b & 0xffffffffffffull));
}

static void hex_into(char *o, uint64_t v, int digits)
{
    static const char hx[] = "0123456789abcdef";
    for (int i = digits - 1; i >= 0; i--, v >>= 4)
        o[i] = hx[v & 15];
}

static void iso_now(char *o) /* 27 chars: 2026-01-01T00:00:00.000000Z */
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    char tmp[96];
    snprintf(tmp, sizeof tmp, "%04d-%02d-%02dT%02d:%02d:%02d.%06ldZ", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
             tm.tm_hour, tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000);
    memcpy(o, tmp, 27);
}

/* ----------------------------------------------------------------- histogram (µs, log-linear) */
#define HB (64 * 40)
static uint64_t hist[HB], hist_n;
static void hadd(uint64_t ns)
{
    uint64_t us = ns / 1000;
    int i;
    if (us < 64)
        i = (int)us;
    else {
        int e = 63 - __builtin_clzll(us); /* >= 6 */
        i = 64 + (e - 6) * 32 + (int)((us >> (e - 5)) & 31);
    }
    if (i >= HB)
        i = HB - 1;
    hist[i]++;
    hist_n++;
}
static double hval(int i)
{
    if (i < 64)
        return i;
    int e = (i - 64) / 32 + 6, m = (i - 64) % 32;
    return (double)((1ull << e) + ((uint64_t)m << (e - 5))) + (double)(1ull << (e - 5)) / 2;
}
static double hpct(double q)
{
    if (!hist_n)
        return 0;
    uint64_t want = (uint64_t)(q * (double)hist_n), seen = 0;
    for (int i = 0; i < HB; i++) {
        seen += hist[i];
        if (seen > want)
            return hval(i);
    }
    return hval(HB - 1);
}

/* ------------------------------------------------------------------ one I/O path */
/* > 0 bytes, 0 closed, -1 would block, -2 error */
static ssize_t conn_read(conn_t *c, char *p, size_t n)
{
    if (!c->ssl) {
        ssize_t r = read(c->fd, p, n);
        if (r >= 0)
            return r;
        return (errno == EAGAIN || errno == EINTR) ? -1 : -2;
    }
    int r = SSL_read(c->ssl, p, (int)(n > 1 << 30 ? 1 << 30 : n));
    if (r > 0)
        return r;
    int e = SSL_get_error(c->ssl, r);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
        return -1;
    if (e == SSL_ERROR_ZERO_RETURN)
        return 0;
    ERR_clear_error();
    return (e == SSL_ERROR_SYSCALL && r == 0) ? 0 : -2;
}

static ssize_t conn_write(conn_t *c, const char *p, size_t n)
{
    if (!c->ssl) {
        ssize_t r = write(c->fd, p, n);
        if (r >= 0)
            return r;
        return (errno == EAGAIN || errno == EINTR) ? -1 : -2;
    }
    int r = SSL_write(c->ssl, p, (int)(n > 1 << 30 ? 1 << 30 : n));
    if (r > 0)
        return r;
    int e = SSL_get_error(c->ssl, r);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
        return -1;
    ERR_clear_error();
    return -2;
}

static void mark_dirty(conn_t *c)
{
    if (!c->dirty) {
        c->dirty = 1;
        G.dirty[G.ndirty++] = c->idx;
    }
}

static int pending_hs;
/* flood mode only */
static int *free_slots, n_free; /* slots of closed connections, reused for the next ones */
static uint32_t *slot_gen; /* bumped on every close: an idle queue entry of a closed connection is stale */

static void conn_close(conn_t *c, int reset)
{
    if (c->state == S_FREE)
        return;
    if (c->state == S_CONNECTING || c->state == S_TLS || c->state == S_HELLO) {
        if (G.mode != M_FLOOD) {
            pending_hs--;
            n_hs_fail++;
        }
    }
    if (c->ssl) {
        SSL_free(c->ssl);
        c->ssl = NULL;
    }
    if (reset) {
        struct linger l = {1, 0};
        setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &l, sizeof l);
    }
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
    buf_free(&c->in);
    buf_free(&c->out);
    if (G.mode == M_FLOOD) {
        c->state = S_FREE;
        f_open--;
        slot_gen[c->idx]++;
        free_slots[n_free++] = c->idx;
    } else
        c->state = S_DEAD;
}

static void conn_fail(conn_t *c, const char *why)
{
    if (c->state == S_DEAD || c->state == S_FREE)
        return;
    n_err++;
    if (!G.quiet && n_err <= 5)
        fprintf(stderr, "tls-load: connection %d: %s\n", c->idx, why);
    conn_close(c, 0);
}

static void flush(conn_t *c)
{
    while (c->out.len > c->out.off) {
        ssize_t w = conn_write(c, c->out.p + c->out.off, c->out.len - c->out.off);
        if (w > 0) {
            c->out.off += (size_t)w;
            continue;
        }
        if (w == -1)
            return;
        conn_fail(c, "write failed");
        return;
    }
    c->out.off = c->out.len = 0;
}

static void append(conn_t *c, const char *p, size_t n)
{
    buf_reserve(&c->out, n);
    memcpy(c->out.p + c->out.len, p, n);
    c->out.len += n;
    mark_dirty(c);
}

/* ------------------------------------------------------------------ connecting */
static void open_socket(conn_t *c, int idx)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        c->fd = -1;
        c->state = S_CONNECTING;
        conn_fail(c, strerror(errno));
        return;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (G.nsrc) {
        struct sockaddr_in s = {.sin_family = AF_INET, .sin_addr = G.src[(unsigned)idx % (unsigned)G.nsrc]};
        setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
        if (bind(fd, (struct sockaddr *)&s, sizeof s) < 0) {
            close(fd);
            c->fd = -1;
            c->state = S_CONNECTING;
            conn_fail(c, "bind to source address failed");
            return;
        }
    }
    c->fd = fd;
    c->state = S_CONNECTING;
    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLET | EPOLLRDHUP, .data.u32 = (uint32_t)c->idx};
    if (epoll_ctl(G.ep, EPOLL_CTL_ADD, fd, &ev) < 0)
        die("epoll_ctl");
    if (connect(fd, (struct sockaddr *)&G.addr, sizeof G.addr) < 0 && errno != EINPROGRESS) {
        if (G.mode == M_FLOOD)
            f_refused++;
        conn_fail(c, strerror(errno));
    }
}

static void send_hello(conn_t *c)
{
    char m[512];
    int n = snprintf(m + 4, sizeof m - 4,
                     "{\"msg_type\":\"HELLO\",\"ttl\":1,\"flood\":false,\"msg_data\":{\"node_id\":\"%s\","
                     "\"version\":\"bench/1\",\"attributes\":{\"node_type\":\"client\"}}}",
                     c->node);
    put_be32(m, (uint32_t)n);
    c->state = S_HELLO;
    append(c, m, (size_t)n + 4);
}

static char negotiated[96] = "none"; /* version and cipher of the first TLS handshake */

static void drive_tls(conn_t *c)
{
    int r = SSL_do_handshake(c->ssl);
    if (r == 1) {
        if (!strcmp(negotiated, "none"))
            snprintf(negotiated, sizeof negotiated, "%s %s", SSL_get_version(c->ssl), SSL_get_cipher_name(c->ssl));
        send_hello(c);
        return;
    }
    int e = SSL_get_error(c->ssl, r);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
        return;
    unsigned long err = ERR_get_error();
    char why[256];
    snprintf(why, sizeof why, "TLS handshake failed: %s", err ? ERR_error_string(err, NULL) : "connection closed");
    ERR_clear_error();
    conn_fail(c, why);
}

static void on_connected(conn_t *c)
{
    if (!G.tls) {
        send_hello(c);
        return;
    }
    c->ssl = SSL_new(G.ctx);
    if (!c->ssl)
        die("SSL_new");
    SSL_set_fd(c->ssl, c->fd);
    SSL_set_connect_state(c->ssl);
    c->state = S_TLS;
    drive_tls(c);
}

/* ------------------------------------------------------------------ thr workload */
static char *tmpl;
static size_t tmpl_len, off_id, off_node, off_rcpt, off_ts, off_pay;
static char iso[28];
static uint64_t t_start, t_meas0, t_end;
static int phase; /* 0 handshake, 1 load, 2 drain */

static void build_template(void)
{
    char head[] = "{\"msg_type\":\"MESSAGE\",\"ttl\":32,\"flood\":false,\"msg_data\":{\"msg_id\":\"";
    size_t cap = 512 + (size_t)G.payload;
    tmpl = malloc(cap);
    char *o = tmpl + 4;
#define PUT(s) (memcpy(o, (s), strlen(s)), o += strlen(s))
    PUT(head);
    off_id = (size_t)(o - tmpl), o += 36;
    PUT("\",\"node_id\":\"");
    off_node = (size_t)(o - tmpl), o += 36;
    PUT("\",\"recipient\":[{\"node_id\":\"");
    off_rcpt = (size_t)(o - tmpl), o += 36;
    PUT("\"}],\"timestamp\":\"");
    off_ts = (size_t)(o - tmpl), o += 27;
    PUT("\",\"channel\":\"bench\",\"channel_id\":\"00000000-0000-4000-8000-00000000be9c\",\"message\":\"");
    off_pay = (size_t)(o - tmpl);
    static const char fill[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    for (int i = 0; i < G.payload; i++)
        *o++ = fill[(i * 7) % 62];
    PUT("\"}}");
#undef PUT
    tmpl_len = (size_t)(o - tmpl);
    put_be32(tmpl, (uint32_t)(tmpl_len - 4));
    if (G.payload < 16)
        die("--payload must be at least 16 (the send time is written into it)");
}

static int bit_test_set(uint8_t **map, conn_t *c, uint64_t seq)
{
    if (seq >= c->bits) {
        size_t nb = c->bits ? c->bits : 4096;
        while (nb <= seq)
            nb *= 2;
        c->got = realloc(c->got, nb / 8);
        c->acked = realloc(c->acked, nb / 8);
        if (!c->got || !c->acked)
            die("out of memory");
        memset(c->got + c->bits / 8, 0, (nb - c->bits) / 8);
        memset(c->acked + c->bits / 8, 0, (nb - c->bits) / 8);
        c->bits = nb;
    }
    uint8_t *m = *map;
    int was = (m[seq / 8] >> (seq % 8)) & 1;
    m[seq / 8] |= (uint8_t)(1u << (seq % 8));
    return was;
}

static void pump(conn_t *c, uint64_t now)
{
    if (phase != 1 || c->state != S_READY || G.c[c->peer].state != S_READY)
        return;
    if (c->outstanding >= (uint64_t)G.window)
        return;
    uint64_t k = (uint64_t)G.window - c->outstanding;
    buf_reserve(&c->out, k * tmpl_len);
    char hex[17];
    snprintf(hex, sizeof hex, "%016llx", (unsigned long long)now);
    if (!c->tmpl) {
        c->tmpl = malloc(tmpl_len);
        if (!c->tmpl)
            die("out of memory");
        memcpy(c->tmpl, tmpl, tmpl_len);
        char id[37];
        uuid_for(id, (uint32_t)c->idx, 0);
        memcpy(c->tmpl + off_id, id, 36);
        memcpy(c->tmpl + off_node, c->node, 36);
        memcpy(c->tmpl + off_rcpt, G.c[c->peer].node, 36);
    }
    char *o = c->out.p + c->out.len;
    for (uint64_t i = 0; i < k; i++) {
        memcpy(o, c->tmpl, tmpl_len);
        hex_into(o + off_id + 24, c->sent + i, 12);
        memcpy(o + off_ts, iso, 27);
        memcpy(o + off_pay, hex, 16);
        o += tmpl_len;
    }
    c->out.len += k * tmpl_len;
    c->sent += k;
    c->outstanding += k;
    n_sent += k;
    mark_dirty(c);
}

static int parse_msg_id(const char *v, size_t vl, uint32_t *idx, uint64_t *seq)
{
    uint64_t a;
    if (vl != 36 || parse_hex(v, 8, &a) || parse_hex(v + 24, 12, seq))
        return -1;
    *idx = (uint32_t)a;
    return 0;
}

static const char ACK_HEAD[] = "{\"msg_type\":\"ACK\",\"ttl\":1,\"flood\":false,\"msg_data\":{\"node_id\":\"";

static void on_frame(conn_t *c, const char *p, const char *e, uint64_t now)
{
    const char *v;
    size_t vl;
    static size_t h_type, h_msg_id, h_message, h_ack_id;
    if (jstr(p, e, "msg_type", &h_type, &v, &vl)) {
        n_ignored++;
        return;
    }
    if (vl == 5 && !memcmp(v, "HELLO", 5) && c->state == S_HELLO) {
        c->state = S_READY;
        pending_hs--;
        n_hs_ok++;
        return;
    }
    if (G.mode == M_HOLD || G.mode == M_HS) {
        n_ignored++;
        return;
    }
    uint32_t idx;
    uint64_t seq;
    if (vl == 7 && !memcmp(v, "MESSAGE", 7)) {
        const char *id, *msg;
        size_t idl, ml;
        if (jstr(p, e, "msg_id", &h_msg_id, &id, &idl) || parse_msg_id(id, idl, &idx, &seq) || (int)idx != c->peer ||
            seq >= G.c[c->peer].sent) {
            n_bad++;
            return;
        }
        if (bit_test_set(&c->got, c, seq))
            n_dup++;
        else {
            n_deliv++;
            uint64_t sent_at;
            if (phase == 1 && now >= t_meas0)
                deliv_win++;
            if (!jstr(p, e, "message", &h_message, &msg, &ml) && ml >= 16 && !parse_hex(msg, 16, &sent_at) && sent_at <= now &&
                phase == 1 && now >= t_meas0)
                hadd(now - sent_at);
        }
        char a[256];
        size_t jl = sizeof ACK_HEAD - 1 + 36 + 12 + 36 + 3;
        put_be32(a, (uint32_t)jl);
        char *o = a + 4;
        memcpy(o, ACK_HEAD, sizeof ACK_HEAD - 1), o += sizeof ACK_HEAD - 1;
        memcpy(o, c->node, 36), o += 36;
        memcpy(o, "\",\"msg_id\":\"", 12), o += 12;
        memcpy(o, id, 36), o += 36;
        memcpy(o, "\"}}", 3);
        append(c, a, jl + 4);
        return;
    }
    if (vl == 3 && !memcmp(v, "ACK", 3)) {
        const char *id;
        size_t idl;
        if (jstr(p, e, "msg_id", &h_ack_id, &id, &idl) || parse_msg_id(id, idl, &idx, &seq) || (int)idx != c->idx ||
            seq >= c->sent) {
            n_bad++;
            return;
        }
        if (!bit_test_set(&c->acked, c, seq)) {
            n_acked++;
            if (c->outstanding)
                c->outstanding--;
            if (phase == 1 && now >= t_meas0)
                acked_win++;
        }
        return;
    }
    n_ignored++;
}

static void on_readable(conn_t *c)
{
    uint64_t now = now_ns();
    for (;;) {
        if (!c->read_size)
            c->read_size = 16384;
        buf_reserve(&c->in, c->read_size);
        size_t space = c->in.cap - c->in.len;
        ssize_t r = conn_read(c, c->in.p + c->in.len, space);
        if (r == -1)
            break;
        if ((size_t)r == space && c->read_size < MAX_READ)
            c->read_size *= 2; /* a busy connection reads in larger pieces */
        if (r == 0) {
            if (G.mode == M_FLOOD)
                f_closed_by_server++;
            else {
                n_closed_by_peer++;
                conn_fail(c, "closed by the relay");
                return;
            }
            conn_close(c, 1);
            return;
        }
        if (r < 0) {
            if (G.mode == M_FLOOD) {
                f_closed_by_server++;
                conn_close(c, 1);
            } else
                conn_fail(c, "read failed");
            return;
        }
        c->in.len += (size_t)r;
        if (G.mode == M_FLOOD) { /* whatever the relay says is dropped */
            c->in.len = c->in.off = 0;
            continue;
        }
        while (c->in.len - c->in.off >= 4) {
            const unsigned char *s = (const unsigned char *)c->in.p + c->in.off;
            uint32_t n = (uint32_t)s[0] << 24 | (uint32_t)s[1] << 16 | (uint32_t)s[2] << 8 | s[3];
            if (n > MAX_FRAME) {
                conn_fail(c, "frame too large");
                return;
            }
            if (c->in.len - c->in.off < 4 + (size_t)n)
                break;
            if (n)
                on_frame(c, (const char *)s + 4, (const char *)s + 4 + n, now);
            if (c->state == S_DEAD)
                return;
            c->in.off += 4 + (size_t)n;
        }
    }
    pump(c, now);
}

static void on_event(conn_t *c, uint32_t ev)
{
    if (c->state == S_FREE || c->state == S_DEAD)
        return;
    if (c->state == S_CONNECTING) {
        int err = 0;
        socklen_t l = sizeof err;
        getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &l);
        if (err) {
            if (G.mode == M_FLOOD) {
                f_refused++;
                conn_close(c, 0);
            } else
                conn_fail(c, strerror(err));
            return;
        }
        if (!(ev & EPOLLOUT))
            return;
        if (G.mode == M_FLOOD) {
            f_connected++;
            if (c->kind == F_CLOSE) {
                conn_close(c, 1);
                return;
            }
            if (c->kind == F_JUNK) {
                static const char junk[] = "\0\0\0\x10not json at all!";
                if (write(c->fd, junk, sizeof junk - 1) > 0)
                    f_junk_sent++;
                conn_close(c, 1);
                return;
            }
            c->state = S_READY; /* idle: held until --max-open pushes it out */
            return;
        }
        on_connected(c);
    }
    if (c->state == S_TLS) {
        drive_tls(c);
        if (c->state == S_TLS || c->state == S_DEAD)
            return;
    }
    on_readable(c);
    if (c->state != S_DEAD && c->state != S_FREE && c->out.len > c->out.off)
        mark_dirty(c);
}

static void flush_dirty(void)
{
    for (int i = 0; i < G.ndirty; i++) {
        conn_t *c = &G.c[G.dirty[i]];
        c->dirty = 0;
        if (c->state != S_DEAD && c->state != S_FREE && c->state != S_CONNECTING && c->state != S_TLS)
            flush(c);
    }
    G.ndirty = 0;
}

static int poll_once(int timeout_ms)
{
    struct epoll_event ev[MAXEV];
    int n = epoll_wait(G.ep, ev, MAXEV, timeout_ms);
    if (n < 0 && errno != EINTR)
        die("epoll_wait");
    for (int i = 0; i < n; i++)
        on_event(&G.c[ev[i].data.u32], ev[i].events);
    flush_dirty();
    return n;
}

static double cpu_seconds(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
}

/* connect every connection with at most --hs-concurrency in flight; returns seconds taken */
static double handshake_all(void)
{
    uint64_t t0 = now_ns(), limit = t0 + (uint64_t)(G.hs_timeout * 1e9);
    int next = 0;
    pending_hs = 0;
    while ((next < G.conns || pending_hs > 0) && !stop_flag && now_ns() < limit) {
        while (next < G.conns && pending_hs < G.hs_conc) {
            conn_t *c = &G.c[next];
            pending_hs++;
            open_socket(c, next);
            next++;
        }
        poll_once(10);
    }
    uint64_t t1 = now_ns();
    for (int i = 0; i < G.conns; i++)
        if (G.c[i].state != S_READY && G.c[i].state != S_DEAD)
            conn_fail(&G.c[i], "handshake timed out");
    return (double)(t1 - t0) / 1e9;
}

static void run_thr(void)
{
    uint64_t t0 = now_ns();
    double hs_s = handshake_all();
    if (G.mode == M_HS) {
        printf("{\"label\":\"%s\",\"mode\":\"hs\",\"tls\":%s,\"conns\":%d,\"hs_ok\":%llu,\"hs_failed\":%llu,"
               "\"hs_per_s\":%.0f,\"errors\":%llu,\"negotiated\":\"%s\"}\n",
               G.label, G.tls ? "true" : "false", G.conns, (unsigned long long)n_hs_ok, (unsigned long long)n_hs_fail,
               hs_s > 0 ? (double)n_hs_ok / hs_s : 0, (unsigned long long)n_err, negotiated);
        return;
    }
    /* settle: the relay registered every node before the first MESSAGE */
    uint64_t settle = now_ns() + 100000000ull;
    while (now_ns() < settle)
        poll_once(10);
    double cpu0 = cpu_seconds();
    t_start = now_ns();
    t_meas0 = t_start + (uint64_t)(G.warmup * 1e9);
    t_end = t_start + (uint64_t)(G.duration * 1e9);
    phase = 1;
    iso_now(iso);
    for (int i = 0; i < G.conns; i++)
        pump(&G.c[i], t_start);
    flush_dirty();
    uint64_t last_iso = t_start;
    while (!stop_flag) {
        uint64_t now = now_ns();
        if (now >= t_end)
            break;
        if (now - last_iso > 1000000ull) {
            iso_now(iso);
            last_iso = now;
        }
        poll_once(5);
    }
    uint64_t t_send_end = now_ns();
    double cpu1 = cpu_seconds();
    phase = 2;
    uint64_t drain_end = t_send_end + (uint64_t)(G.drain * 1e9);
    while (now_ns() < drain_end && n_acked + 0 < n_sent && !stop_flag)
        poll_once(5);
    /* the last ACKs answered and sent */
    flush_dirty();
    double win = (double)(t_send_end - t_meas0) / 1e9;
    uint64_t lost = n_sent > n_deliv ? n_sent - n_deliv : 0, unacked = n_sent > n_acked ? n_sent - n_acked : 0;
    printf("{\"label\":\"%s\",\"mode\":\"thr\",\"tls\":%s,\"conns\":%d,\"window\":%d,\"payload\":%d,\"frame_bytes\":%zu,"
           "\"hs_ok\":%llu,\"hs_failed\":%llu,\"hs_per_s\":%.0f,\"sent\":%llu,\"delivered\":%llu,\"acked\":%llu,"
           "\"delivered_per_s\":%.0f,\"acked_per_s\":%.0f,\"lat_p50_us\":%.0f,\"lat_p99_us\":%.0f,"
           "\"lost\":%llu,\"dup\":%llu,\"unacked\":%llu,\"bad\":%llu,\"errors\":%llu,\"closed_by_relay\":%llu,"
           "\"ignored_frames\":%llu,\"lg_cpu_pct\":%.0f,\"complete\":%s,\"wall_s\":%.1f,\"negotiated\":\"%s\"}\n",
           G.label, G.tls ? "true" : "false", G.conns, G.window, G.payload, tmpl_len, (unsigned long long)n_hs_ok,
           (unsigned long long)n_hs_fail, hs_s > 0 ? (double)n_hs_ok / hs_s : 0, (unsigned long long)n_sent,
           (unsigned long long)n_deliv, (unsigned long long)n_acked, win > 0 ? (double)deliv_win / win : 0,
           win > 0 ? (double)acked_win / win : 0, hpct(0.50), hpct(0.99), (unsigned long long)lost,
           (unsigned long long)n_dup, (unsigned long long)unacked, (unsigned long long)n_bad,
           (unsigned long long)n_err, (unsigned long long)n_closed_by_peer, (unsigned long long)n_ignored,
           100.0 * (cpu1 - cpu0) / ((double)(t_send_end - t_start) / 1e9),
           (lost == 0 && unacked == 0 && n_dup == 0 && n_bad == 0 && n_err == 0 && n_sent > 0) ? "true" : "false",
           (double)(now_ns() - t0) / 1e9, negotiated);
}

/* ------------------------------------------------------------------ hold */
static void run_hold(void)
{
    double hs_s = handshake_all();
    printf("{\"label\":\"%s\",\"mode\":\"hold\",\"tls\":%s,\"conns\":%d,\"ready\":%llu,\"hs_failed\":%llu,"
           "\"hs_per_s\":%.0f,\"errors\":%llu}\n",
           G.label, G.tls ? "true" : "false", G.conns, (unsigned long long)n_hs_ok, (unsigned long long)n_hs_fail,
           hs_s > 0 ? (double)n_hs_ok / hs_s : 0, (unsigned long long)n_err);
    fflush(stdout);
    uint64_t end = now_ns() + (uint64_t)(G.hold * 1e9), next_keepalive = now_ns() + 20000000000ull;
    while (!stop_flag && now_ns() < end) {
        poll_once(200);
        if (now_ns() >= next_keepalive) { /* an empty frame: the relay's idle timer sees a live client */
            for (int i = 0; i < G.conns; i++)
                if (G.c[i].state == S_READY)
                    append(&G.c[i], "\0\0\0\0", 4);
            flush_dirty();
            next_keepalive = now_ns() + 20000000000ull;
        }
    }
    if (n_closed_by_peer)
        fprintf(stderr, "tls-load: %llu held connections were closed by the relay\n",
                (unsigned long long)n_closed_by_peer);
}

/* ------------------------------------------------------------------ flood */

static void run_flood(void)
{
    int slots = G.max_open;
    free_slots = calloc((size_t)slots, sizeof(int));
    slot_gen = calloc((size_t)slots, sizeof(uint32_t));
    uint64_t *idle_q = calloc((size_t)slots, sizeof(uint64_t)); /* (slot, generation) of idle ones, oldest first */
    if (!free_slots || !slot_gen || !idle_q)
        die("out of memory");
    for (int i = slots - 1; i >= 0; i--)
        free_slots[n_free++] = i;
    int head = 0, count = 0, next_kind = 0;
    uint64_t t0 = now_ns(), end = t0 + (uint64_t)(G.duration * 1e9);
    double cpu0 = cpu_seconds();
    while (!stop_flag && now_ns() < end) {
        for (int k = 0; k < 64; k++) {
            if (n_free == 0) { /* all slots taken: the oldest idle connection makes room */
                while (count > 0 && n_free == 0) {
                    uint64_t e = idle_q[head];
                    head = (head + 1) % slots;
                    count--;
                    conn_t *old = &G.c[(int)(e >> 32)];
                    if (slot_gen[old->idx] == (uint32_t)e && old->state != S_FREE)
                        conn_close(old, 1);
                }
                if (n_free == 0)
                    break; /* every slot is a connect in flight: poll first */
            }
            conn_t *c = &G.c[free_slots[--n_free]];
            c->kind = G.flood_kind >= 0 ? G.flood_kind : next_kind;
            next_kind = (next_kind + 1) % 3;
            f_attempts++;
            f_open++;
            if (f_open > f_peak_open)
                f_peak_open = f_open;
            open_socket(c, (int)f_attempts);
            if (c->kind == F_IDLE && c->state != S_FREE) {
                if (count == slots) { /* full of stale entries */
                    head = (head + 1) % slots;
                    count--;
                }
                idle_q[(head + count) % slots] = (uint64_t)c->idx << 32 | slot_gen[c->idx];
                count++;
            }
        }
        poll_once(n_free ? 0 : 1); /* every slot a connect in flight: wait for one instead of spinning */
    }
    double secs = (double)(now_ns() - t0) / 1e9, cpu = cpu_seconds() - cpu0;
    for (int i = 0; i < slots; i++)
        if (G.c[i].state != S_FREE)
            conn_close(&G.c[i], 1);
    printf("{\"label\":\"%s\",\"mode\":\"flood\",\"tls\":%s,\"seconds\":%.1f,\"attempts\":%llu,\"connected\":%llu,"
           "\"connected_per_s\":%.0f,\"refused\":%llu,\"closed_by_relay\":%llu,\"junk_frames\":%llu,\"peak_open\":%llu,"
           "\"errors\":%llu,\"cpu_pct\":%.0f}\n",
           G.label, G.tls ? "true" : "false", secs, (unsigned long long)f_attempts, (unsigned long long)f_connected,
           secs > 0 ? (double)f_connected / secs : 0, (unsigned long long)f_refused,
           (unsigned long long)f_closed_by_server, (unsigned long long)f_junk_sent, (unsigned long long)f_peak_open,
           (unsigned long long)n_err, secs > 0 ? 100.0 * cpu / secs : 0);
    free(idle_q);
}

/* ------------------------------------------------------------------ main */
static void on_signal(int s)
{
    (void)s;
    stop_flag = 1;
}

static void usage(void)
{
    fprintf(stderr,
            "usage: tls-load --port P [--host 127.0.0.x] [--tls] [--mode thr|hs|hold|flood] [--conns C]\n"
            "       [--window W] [--payload B] [--duration S] [--warmup S] [--drain S] [--hold S]\n"
            "       [--hs-concurrency K] [--hs-timeout S] [--src-ips A,B,..] [--max-open N]\n"
            "       [--flood-kind close|junk|idle|mix] [--label L] [--quiet]\n");
    exit(2);
}

int main(int argc, char **argv)
{
    static struct option opts[] = {
        {"port", 1, 0, 'p'}, {"host", 1, 0, 'H'}, {"tls", 0, 0, 't'}, {"mode", 1, 0, 'm'},
        {"conns", 1, 0, 'c'}, {"window", 1, 0, 'w'}, {"payload", 1, 0, 'b'}, {"duration", 1, 0, 'd'},
        {"warmup", 1, 0, 'u'}, {"drain", 1, 0, 'r'}, {"hold", 1, 0, 'o'}, {"hs-concurrency", 1, 0, 'k'},
        {"hs-timeout", 1, 0, 'T'}, {"src-ips", 1, 0, 's'}, {"max-open", 1, 0, 'x'}, {"flood-kind", 1, 0, 'f'},
        {"label", 1, 0, 'L'}, {"quiet", 0, 0, 'q'}, {0, 0, 0, 0}};
    int port = 0, opt;
    const char *host = "127.0.0.1";
    while ((opt = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (opt) {
        case 'p': port = atoi(optarg); break;
        case 'H': host = optarg; break;
        case 't': G.tls = 1; break;
        case 'm':
            if (!strcmp(optarg, "thr")) G.mode = M_THR;
            else if (!strcmp(optarg, "hs")) G.mode = M_HS;
            else if (!strcmp(optarg, "hold")) G.mode = M_HOLD;
            else if (!strcmp(optarg, "flood")) G.mode = M_FLOOD;
            else usage();
            break;
        case 'c': G.conns = atoi(optarg); break;
        case 'w': G.window = atoi(optarg); break;
        case 'b': G.payload = atoi(optarg); break;
        case 'd': G.duration = atof(optarg); break;
        case 'u': G.warmup = atof(optarg); break;
        case 'r': G.drain = atof(optarg); break;
        case 'o': G.hold = atof(optarg); break;
        case 'k': G.hs_conc = atoi(optarg); break;
        case 'T': G.hs_timeout = atof(optarg); break;
        case 'x': G.max_open = atoi(optarg); break;
        case 'f':
            if (!strcmp(optarg, "close")) G.flood_kind = F_CLOSE;
            else if (!strcmp(optarg, "junk")) G.flood_kind = F_JUNK;
            else if (!strcmp(optarg, "idle")) G.flood_kind = F_IDLE;
            else if (!strcmp(optarg, "mix")) G.flood_kind = -1;
            else usage();
            break;
        case 's': {
            char *tmp = strdup(optarg), *save = NULL;
            for (char *t = strtok_r(tmp, ",", &save); t && G.nsrc < MAX_SRC; t = strtok_r(NULL, ",", &save)) {
                if (inet_pton(AF_INET, t, &G.src[G.nsrc]) != 1 || (ntohl(G.src[G.nsrc].s_addr) >> 24) != 127)
                    die("--src-ips takes loopback addresses 127.x.y.z");
                G.nsrc++;
            }
            free(tmp);
            break;
        }
        case 'L': snprintf(G.label, sizeof G.label, "%s", optarg); break;
        case 'q': G.quiet = 1; break;
        default: usage();
        }
    }
    if (port <= 0 || port > 65535 || G.conns < 1 || G.window < 1 || G.max_open < 1)
        usage();
    if ((G.mode == M_THR) && G.conns % 2)
        die("--conns must be even for thr (pairs)");
    G.addr.sin_family = AF_INET;
    G.addr.sin_port = htons((uint16_t)port);
    if (inet_pton(AF_INET, host, &G.addr.sin_addr) != 1 || (ntohl(G.addr.sin_addr.s_addr) >> 24) != 127)
        die("only loopback targets (127.0.0.0/8)");
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    signal(SIGPIPE, SIG_IGN);
    signal(SIGTERM, on_signal);
    signal(SIGINT, on_signal);
    if (G.tls) {
        G.ctx = SSL_CTX_new(TLS_client_method());
        if (!G.ctx)
            die("SSL_CTX_new");
        SSL_CTX_set_verify(G.ctx, SSL_VERIFY_NONE, NULL); /* the benchmark's self-signed certificate */
        SSL_CTX_set_session_cache_mode(G.ctx, SSL_SESS_CACHE_OFF); /* every handshake a full one */
        SSL_CTX_set_mode(G.ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
                                    (G.mode == M_HOLD ? SSL_MODE_RELEASE_BUFFERS : 0));
        /* TLS_LOAD_CIPHERSUITES: the TLS 1.3 suites offered, in order (OpenSSL's default offers
         * AES-256-GCM first, and the relay's BoringSSL follows the client's order): to measure what
         * the suite costs, e.g. TLS_AES_128_GCM_SHA256 as BoringSSL clients (ptpchat) prefer. */
        const char *suites = getenv("TLS_LOAD_CIPHERSUITES");
        if (suites && *suites && !SSL_CTX_set_ciphersuites(G.ctx, suites))
            die("TLS_LOAD_CIPHERSUITES: no usable suite");
        const char *v = getenv("TLS_LOAD_MAX_VERSION"); /* "1.2" pins TLS 1.2 */
        if (v && !strcmp(v, "1.2"))
            SSL_CTX_set_max_proto_version(G.ctx, TLS1_2_VERSION);
    }
    int n = G.mode == M_FLOOD ? G.max_open : G.conns;
    G.c = calloc((size_t)n, sizeof(conn_t));
    G.dirty = calloc((size_t)n, sizeof(int));
    if (!G.c || !G.dirty)
        die("out of memory");
    uint64_t run = (uint64_t)now_ns() ^ ((uint64_t)getpid() << 32);
    for (int i = 0; i < n; i++) {
        G.c[i].idx = i;
        G.c[i].fd = -1;
        G.c[i].peer = i ^ 1;
        uuid_for(G.c[i].node, (uint32_t)(run >> 16), (run & 0xffff) << 32 | (uint64_t)i);
    }
    G.ep = epoll_create1(EPOLL_CLOEXEC);
    if (G.ep < 0)
        die("epoll_create1");
    build_template();
    if (G.mode == M_THR || G.mode == M_HS)
        run_thr();
    else if (G.mode == M_HOLD)
        run_hold();
    else
        run_flood();
    return 0;
}
